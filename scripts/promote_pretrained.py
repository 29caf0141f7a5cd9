"""Install a finished run as the pretrained default for its norm (maintainers).

    python scripts/promote_pretrained.py RUN_FOLDER [--dest FOLDER]

Copies RUN_FOLDER/model.safetensors to src/normlab/pretrained/<norm>.safetensors and writes the model
card <norm>.md from the run's config.json and results.json (see normlab.pretrained.promote).
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
    a = ap.parse_args(argv)
    try:
        path = promote(a.run, a.dest)
    except NormlabError as exc:
        print(f"promote_pretrained: error: {exc}", file=sys.stderr)
        return 2
    print(f"installed {path} and {path.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
