"""Inference latency per norm: each model in PyTorch (float32, as trained and with BatchNorm folded) and
in ONNX Runtime (float32 folded, and int8), at batch 1 and batch 256, side by side, in one process.

    python benchmarks/inference.py --data-dir ../shared/data --out results/benchmarks/inference.json

Models: the three pretrained defaults (convmixer-hr2 bn, convmixer-s16 gn, convmixer-fr32 ln) and S8 with bn, gn and ln
(results/reference-bf16-3seeds, seed 0). Each figure is the median wall time of repeated calls on random
uint8 images after a warm-up (200 calls at batch 1, 10 at batch 256), with all cores of this machine; the
int8 model is calibrated on training images as ``normlab export --int8`` does. The CPU model and its
flags are recorded with the figures: latency depends on them (AVX512-VNNI/AMX speed up int8, AVX512-BF16
does not apply to these float32/int8 runs).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

import normlab
from normlab.data import load_cifar10
from normlab.deploy import fold_batch_norm, latency_ms, onnx_runner, onnx_session, save_int8_onnx, save_onnx, torch_logits
from normlab.devices import cpu_description
from normlab.heap import keep_freed_memory

ROOT = Path(__file__).resolve().parents[1]
S8_RUNS = {n: ROOT / "results" / "reference-bf16-3seeds" / f"s8-{n}-seed0" for n in ("bn", "gn", "ln")}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", help="CIFAR-10 folder (for int8 calibration images)")
    p.add_argument("--out", help="write the figures as JSON here")
    p.add_argument("--calibration-images", type=int, default=1000)
    a = p.parse_args(argv)
    keep_freed_memory()
    calibration = load_cifar10(a.data_dir).train_x[:a.calibration_images]
    from normlab.pretrained import weights_path
    from normlab.weights import read_weights

    models = {f"pretrained {n} ({read_weights(weights_path(n))[0]['arch']})": normlab.load_pretrained(n)
              for n in ("bn", "gn", "ln")}
    models.update({f"s8 {n}": normlab.load_model(path) for n, path in S8_RUNS.items()})
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, model in models.items():
            model = model.float().eval()
            folded, counts = fold_batch_norm(model)
            fp32, int8 = Path(tmp) / "m.onnx", Path(tmp) / "m.int8.onnx"
            save_onnx(folded, fp32)
            save_int8_onnx(model, int8, calibration)
            runners = {"pytorch fp32": lambda b, m=model: torch_logits(m, b),
                       "pytorch fp32 folded": lambda b, m=folded: torch_logits(m, b),
                       "onnxruntime fp32 folded": onnx_runner(onnx_session(fp32)),
                       "onnxruntime int8": onnx_runner(onnx_session(int8))}
            row = {"model": name, "folded": counts, "params": normlab.count_params(model),
                   "latency_ms": {k: {str(b): round(latency_ms(fn, b), 3) for b in (1, 256)} for k, fn in runners.items()}}
            rows.append(row)
            print(name, json.dumps(row["latency_ms"]), flush=True)
    result = {"cpu": cpu_description(), "threads": torch.get_num_threads(), "torch": torch.__version__,
              "onnxruntime": __import__("onnxruntime").__version__, "python": sys.version.split()[0], "rows": rows}
    runtimes = list(rows[0]["latency_ms"])
    print(f"\n{result['cpu']['model']} ({', '.join(result['cpu']['flags'])}), {result['threads']} threads\n")
    print("| model | batch | " + " | ".join(runtimes) + " |")
    print("|---|---:|" + "---:|" * len(runtimes))
    for r in rows:
        for b in ("1", "256"):
            base = r["latency_ms"]["pytorch fp32"][b]
            print(f"| {r['model']} | {b} | " + " | ".join(
                f"{r['latency_ms'][k][b]:.2f} ms ({base / r['latency_ms'][k][b]:.1f}x)" for k in runtimes) + " |")
    if a.out:
        from normlab.runs import atomic_write_json

        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(a.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
