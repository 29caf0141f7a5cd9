#!/usr/bin/env bash
# Create .venv (if missing) and install normlab with its pinned dependencies (constraints.txt pins
# torch==2.13.0, the CPU build; an unpinned torch would pull GBs of CUDA wheels), with the test tools
# the optional Ray extra (`normlab sweep --backend ray`, about 80 MB) and the export extra (`normlab export`:
# onnx, onnxscript, onnxruntime, about 120 MB), so every test can run.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[test,ray,export]"
