"""Rewrite a committed report from its own run list (maintainers).

    python scripts/rereport.py REPORT_FOLDER [--add RUN ...] [--after RUN] [--title TITLE]

Reads REPORT_FOLDER/report.md's title and its runs (the "### <run>: ..." headings, paths relative to the
folder) and runs `normlab report` again on the same runs in the same order, with the same title, so a
report picks up a change in how reports are drawn, or new runs (`--add`, placed after the run named by
`--after`, else at the end), without retyping a run list of dozens of folders. `--title` replaces the title
(e.g. when added runs bring a new architecture).

A batch-size study's report (`normlab study batch-size`) is rewritten from the finished runs in its folder,
with the learning rate it names; it takes no --add, --after or --title.

Figures are not kept in git: every figure a run lacks is drawn again from its data first (the
misclassified galleries need CIFAR-10: set NORMLAB_DATA, else the report says they are left out).
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from normlab.errors import NormlabError
from normlab.metrics import held_out
from normlab.reports import batch_size_report
from normlab.runs import RunDir
from normlab.study import BASE_BATCH, report_runs

BATCH_PLOT = "![batch size](batch_size.png)"


def run_list(folder: Path) -> tuple[str, list[Path]]:
    """(title, run folders) of the report in ``folder``, as its report.md names them."""
    md = folder / "report.md"
    if not md.is_file():
        raise NormlabError(f"{md} not found: give a folder that holds a report.md written by normlab")
    lines = md.read_text().splitlines()
    title = lines[0].removeprefix("# ").strip()
    runs = [folder / m.group(1) for line in lines if (m := re.match(r"### (.+): (?:test|val) ", line))]
    if not runs:
        raise NormlabError(f"{md} names no runs (no '### RUN: test/val ...' headings)")
    return title, runs


def is_batch_size_report(folder: Path) -> bool:
    md = folder / "report.md"
    return md.is_file() and BATCH_PLOT in md.read_text()


def batch_size_runs(folder: Path) -> tuple[list[dict], float]:
    """(results, base learning rate) of the batch-size study in ``folder``: its finished ``*-bs<B>`` runs,
    largest batch first and the norms in the order of the report's table, as the study ran them."""
    md = (folder / "report.md").read_text()
    runs = [RunDir(f) for f in sorted(folder.iterdir()) if re.search(r"-bs\d+$", f.name) and RunDir(f).finished]
    if not runs:
        raise NormlabError(f"{folder}: no finished *-bs<B> run folders to report")
    results = [run.results() for run in runs]
    header = next((line for line in md.splitlines() if line.startswith("| batch |")), "")
    order = re.findall(r"\| (\S+) (?:test|val) acc", header)
    norms = list(dict.fromkeys(order + [r["norm"] for r in results]))
    results.sort(key=lambda r: (-r["batch_size"], norms.index(r["norm"])))
    if m := re.search(r"Learning rate = ([0-9.e+-]+) x batch", md):
        base_lr = float(m.group(1))
    else:  # scaled linearly from the base: any run gives it back
        base_lr = results[0]["lr"] * BASE_BATCH / results[0]["batch_size"]
    if len({held_out(r) for r in results}) > 1:
        raise NormlabError(f"{folder}: some runs held out a validation split and others did not")
    return results, base_lr


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="rewrite a committed report from its own run list")
    ap.add_argument("folder", help="report folder (holds report.md)")
    ap.add_argument("--add", nargs="+", default=[], metavar="RUN", help="finished run folders to add")
    ap.add_argument("--after", metavar="RUN", help="put the added runs after this run (default: at the end)")
    ap.add_argument("--title", help="a new title for the report (default: keep its own)")
    a = ap.parse_args(argv)
    folder = Path(a.folder)
    try:
        if is_batch_size_report(folder):
            if a.add or a.after or a.title:
                raise NormlabError("a batch-size report is drawn from the runs in its folder; --add, --after "
                                   "and --title are for comparison reports")
            results, base_lr = batch_size_runs(folder)
            batch_size_report(folder, results, base_lr)
            print(f"batch-size report of {len(results)} runs: {folder / 'report.md'}")
            return 0
        title, runs = run_list(folder)
        added = [Path(os.path.relpath(r, folder)) for r in a.add]
        at = len(runs)
        if a.after:
            after = Path(os.path.relpath(a.after, folder))
            names = [Path(os.path.relpath(r, folder)) for r in runs]
            if after not in names:
                raise NormlabError(f"--after {a.after}: not a run of {folder / 'report.md'}")
            at = names.index(after) + 1
        runs[at:at] = [folder / r for r in added]
        results = report_runs(runs, folder, a.title or title)
    except NormlabError as exc:
        print(f"rereport: error: {exc}", file=sys.stderr)
        return 2
    print(f"report of {len(results)} runs: {folder / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
