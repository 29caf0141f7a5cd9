"""Rewrite a committed report from its own run list (maintainers).

    python scripts/rereport.py REPORT_FOLDER [--add RUN ...] [--after RUN] [--title TITLE]

Reads REPORT_FOLDER/report.md's title and its runs (the "### <run>: ..." headings, paths relative to the
folder) and runs `normlab report` again on the same runs in the same order, with the same title, so a
report picks up a change in how reports are drawn, or new runs (`--add`, placed after the run named by
`--after`, else at the end), without retyping a run list of dozens of folders. `--title` replaces the title
(e.g. when added runs bring a new architecture).
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from normlab.errors import NormlabError
from normlab.study import report_runs


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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="rewrite a committed report from its own run list")
    ap.add_argument("folder", help="report folder (holds report.md)")
    ap.add_argument("--add", nargs="+", default=[], metavar="RUN", help="finished run folders to add")
    ap.add_argument("--after", metavar="RUN", help="put the added runs after this run (default: at the end)")
    ap.add_argument("--title", help="a new title for the report (default: keep its own)")
    a = ap.parse_args(argv)
    folder = Path(a.folder)
    try:
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
