#!/usr/bin/env bash
# What the shipped models cost after training: the committed results/robustness and results/export.
# About 50 minutes for the robustness report and 10 for the exports on a 2-core CPU; NORMLAB_DATA must
# point at CIFAR-10. The robustness report is updated: only models that are new or whose weights changed are
# measured again. The exports are kept (each refuses to overwrite without --overwrite).
set -euo pipefail
cd "$(dirname "$0")/.."
S8=results/reference-bf16-3seeds
.venv/bin/normlab robustness --pretrained bn,gn,ln "$S8/s8-bn-seed0" "$S8/s8-gn-seed0" "$S8/s8-ln-seed0" \
  --adapt-bn --out results/robustness --update
for norm in bn gn ln; do
  .venv/bin/normlab export --pretrained "$norm" --format onnx --int8 --out "results/export/pretrained-$norm"
  .venv/bin/normlab export "$S8/s8-$norm-seed0" --format onnx --int8 --out "results/export/s8-$norm-seed0"
done
# latency depends on the CPU: one file per machine class (amx, avx512-bf16, ...)
cpu=$(.venv/bin/python -c "from normlab.devices import cpu_class; print(cpu_class())")
.venv/bin/python benchmarks/inference.py --out "results/benchmarks/inference-$cpu.json"
# the pretrained models' cards gain these figures (same weights, same sha256)
for run in results/convmixer-hr2-bn-fast-muon-convs-mlr0.2/convmixer-hr2-bn-seed0 \
           results/convmixer-fr32-gn-fast-b128-muon-convs/convmixer-fr32-gn-seed0 \
           results/convmixer-fr32-ln-fast-b128-muon-convs/convmixer-fr32-ln-seed0; do
  norm=$(basename "$run" | cut -d- -f3)
  .venv/bin/python scripts/promote_pretrained.py "$run" --export "results/export/pretrained-$norm" \
    --robustness results/robustness/robustness.json
done
