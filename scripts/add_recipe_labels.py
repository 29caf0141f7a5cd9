"""Add ``recipe_label`` to the results.json of run folders written before normlab recorded it.

normlab now stores each run's recipe label (the preset's name plus what ``--set`` changed, e.g.
"fast-b128-ema optimizer=muon muon_lr=0.1") in results.json when the run starts, and reports read it
from there. Older run folders lack it; this computes it once from their config.json against the presets
as they stand (presets only ever gain fields with defaults that keep old runs' behaviour) and writes it.

    python scripts/add_recipe_labels.py results/      # every run folder below results/
"""
from __future__ import annotations

import sys
from pathlib import Path

from normlab.errors import NormlabError
from normlab.recipes import Recipe, recipe_label
from normlab.runs import CONFIG, RESULTS, atomic_write_json, read_json


def label_runs(root: Path) -> int:
    """Write the label into every results.json below ``root`` that lacks one; return how many."""
    done = 0
    for path in sorted(root.rglob(RESULTS)):
        results = read_json(path)
        if "recipe_label" in results or not (path.parent / CONFIG).is_file():
            continue
        label = recipe_label(Recipe.from_dict(read_json(path.parent / CONFIG)["recipe"]))
        keys = list(results)
        at = keys.index("recipe") + 1 if "recipe" in keys else len(keys)
        items = list(results.items())
        atomic_write_json(path, dict(items[:at] + [("recipe_label", label)] + items[at:]))
        done += 1
    return done


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not Path(argv[0]).is_dir():
        print("usage: python scripts/add_recipe_labels.py FOLDER (a folder of run folders)", file=sys.stderr)
        return 2
    try:
        print(f"labelled {label_runs(Path(argv[0]))} run(s)")
    except NormlabError as exc:
        print(f"add_recipe_labels: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
