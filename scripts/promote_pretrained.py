"""Install a finished run as the pretrained default for its norm (maintainers).

    python scripts/promote_pretrained.py RUN_FOLDER [--dest FOLDER] [--export DIR] [--robustness FILE]

Copies RUN_FOLDER/model.safetensors to src/normlab/pretrained/<norm>.safetensors and writes the model
card <norm>.md from the run's config.json and results.json (see normlab.pretrained.promote); --export (a
`normlab export` folder) and --robustness (a `normlab robustness` robustness.json) add what the model costs
after training: exported sizes, int8 accuracy, latency, corruption accuracy.
"""
from __future__ import annotations

import argparse
import sys

from normlab.errors import NormlabError
from normlab.pretrained import promote


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="install a finished run as the pretrained default for its norm")
    ap.add_argument("run", help="finished run folder (holds results.json and model.safetensors)")
    ap.add_argument("--dest", help="pretrained folder (default: $NORMLAB_PRETRAINED_DIR, else the package's)")
    ap.add_argument("--export", help="a normlab export folder of this model (its export.json goes into the card)")
    ap.add_argument("--robustness", help="a robustness.json with a pretrained-<norm> entry (goes into the card)")
    a = ap.parse_args(argv)
    try:
        path = promote(a.run, a.dest, export=a.export, robustness=a.robustness)
    except NormlabError as exc:
        print(f"promote_pretrained: error: {exc}", file=sys.stderr)
        return 2
    print(f"installed {path} and {path.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
