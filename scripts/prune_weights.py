"""Drop the weights of validation-split runs that no figure needs (maintainers).

    NORMLAB_DATA=/path/to/cifar python scripts/prune_weights.py [--apply] [FOLDER ...]

git keeps weights behind a claim, and the tracked tree must stay small enough to copy to a GPU machine
(64 MiB; tests/test_repository.py). A run's weights stay when:

- it recorded a test-set accuracy (``test_acc`` in results.json): that figure re-evaluates from them;
- it is the first run (by path) of an (architecture, norm) pair none of whose runs has a test figure:
  tests/test_results.py re-evaluates it to check that the model code still builds the same net.

Every other run trained on a validation split and was judged on it only; its config, metrics, results
and confusion matrix stay, and the weights can be had again by running its config (or from git history).
Before a run's weights go, its gallery record (misclassified.json) is written from them, so that
`normlab report` still draws its gallery.

A run copied into a second folder (the leaderboard reuses runs of earlier studies under the same protocol)
keeps its weights once: every later copy, by path, becomes a relative link to the first, which loads the
same and weighs nothing. Without --apply, only lists what it would drop and link.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

from normlab.errors import NormlabError
from normlab.runs import RESULTS, WEIGHTS

ROOT = Path(__file__).resolve().parents[1]


def droppable(runs: list[Path]) -> list[Path]:
    """The run folders among ``runs`` whose weights no figure needs (see the module docstring)."""
    results = {run: json.loads((run / RESULTS).read_text()) for run in runs}
    models: dict[tuple, list[Path]] = {}
    for run in sorted(runs):
        models.setdefault((results[run].get("arch"), results[run].get("norm")), []).append(run)
    keep = {run for run in runs if "test_acc" in results[run]}
    keep |= {group[0] for group in models.values() if not keep.intersection(group)}
    return [run for run in sorted(runs) if run not in keep and (run / WEIGHTS).is_file()]


def duplicates(runs: list[Path]) -> list[tuple[Path, Path]]:
    """(copy, original) for every run among ``runs`` whose weights are a byte-for-byte copy of an earlier
    run's (by path); links are already deduplicated and left out."""
    first: dict[str, Path] = {}
    pairs = []
    for run in sorted(runs):
        weights = run / WEIGHTS
        if weights.is_file() and not weights.is_symlink():
            digest = hashlib.sha256(weights.read_bytes()).hexdigest()
            if digest in first:
                pairs.append((run, first[digest]))
            else:
                first[digest] = run
    return pairs


def link(copy: Path, original: Path) -> None:
    """Replace ``copy``'s weights by a relative link to ``original``'s, atomically."""
    tmp = copy / f".{WEIGHTS}.link"
    tmp.unlink(missing_ok=True)
    os.symlink(os.path.relpath(original / WEIGHTS, copy), tmp)
    os.replace(tmp, copy / WEIGHTS)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="*", type=Path, default=[ROOT / "results"],
                        help="where to look for run folders (default: results/)")
    parser.add_argument("--apply", action="store_true", help="write the gallery records, delete the weights and link the copies")
    args = parser.parse_args(argv)
    runs = sorted({p.parent for folder in args.folders for p in folder.rglob(RESULTS)
                   if (p.parent / "config.json").is_file()})
    drop = droppable(runs)
    size = sum((run / WEIGHTS).stat().st_size for run in drop)
    copies = duplicates([run for run in runs if run not in drop])  # never a link to weights about to go
    print(f"{len(drop)} of {len(runs)} runs' weights are not needed ({size / 1e6:.1f} MB)")
    print(f"{len(copies)} runs' weights copy another run's "
          f"({sum((c / WEIGHTS).stat().st_size for c, _ in copies) / 1e6:.1f} MB)")
    if not args.apply:
        print("\n".join([str(run) for run in drop] + [f"{c} = {o}" for c, o in copies]))
        return 0
    for copy, original in copies:
        link(copy, original)
        print(f"{copy}: weights linked to {original}")
    if not drop:
        return 0
    from normlab.data import load_cifar10
    from normlab.reports import keep_gallery_record

    data = load_cifar10(download_missing=False)
    for run in drop:
        written = keep_gallery_record(run, data)
        (run / WEIGHTS).unlink()
        print(f"{run}: weights dropped{' (gallery record written first)' if written else ''}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except NormlabError as exc:
        sys.exit(f"prune_weights: {exc}")
