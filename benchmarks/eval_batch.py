"""Cost of one evaluation pass by batch size, on the CPU (random images of CIFAR-10's shape, fresh weights).

Why `normlab.engine.EVAL_BATCH_CPU` is small: glibc malloc maps every block over 32 MiB afresh from the
kernel and unmaps it when it is freed, so batches whose layer outputs pass that size pay for their pages
in minor page faults (system time) at every layer. One thread; each pass after a warm-up; CPU seconds are
the process's own (user + system), so another job on the machine disturbs them little. It also checks
that every batch size gives the same logits to the bit as the first.

    python benchmarks/eval_batch.py [--batches 1000,250,128,64] [--images 4000] [--archs s8:bn,convmixer:bn]

Like normlab's commands it now keeps freed memory in the process (normlab.heap), which removes those
page faults; NORMLAB_MALLOC=system measures with glibc's default malloc, as before.
"""
from __future__ import annotations

import argparse
import resource
import time

import torch

from normlab.evaluation import predict_logits
from normlab.heap import keep_freed_memory
from normlab.models import build_model


def one_pass(model, x, batch: int) -> tuple[torch.Tensor, dict]:
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    logits = predict_logits(model, x, torch.device("cpu"), "fp32", batch_size=batch)
    r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    return logits, {"wall": t1 - t0, "user": r1.ru_utime - r0.ru_utime, "sys": r1.ru_stime - r0.ru_stime,
                    "faults": r1.ru_minflt - r0.ru_minflt}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", default="1000,250,128,64", help="batch sizes; the first is the reference")
    ap.add_argument("--images", type=int, default=4000)
    ap.add_argument("--archs", default="s8:bn,convmixer:bn,convmixer-s16:gn", help="arch:norm pairs")
    a = ap.parse_args()
    print("malloc keeps freed memory" if keep_freed_memory() else "system malloc")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    x = torch.randint(0, 256, (a.images, 3, 32, 32), dtype=torch.uint8)
    batches = [int(b) for b in a.batches.split(",")]
    print(f"{a.images} images, one thread, torch {torch.__version__}")
    print("| arch | norm | batch | wall s | user s | system s | minor faults | same logits |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for pair in a.archs.split(","):
        arch, norm = pair.split(":")
        model = build_model(arch, norm).eval()
        one_pass(model, x[:256], 64)  # warm-up: oneDNN picks its kernels
        first = None
        for b in batches:
            logits, t = one_pass(model, x, b)
            first = logits if first is None else first
            same = "yes" if torch.equal(logits, first) else f"no (max diff {float((logits - first).abs().max()):.2e})"
            print(f"| {arch} | {norm} | {b} | {t['wall']:.2f} | {t['user']:.2f} | {t['sys']:.2f} | {t['faults']:,} | {same} |")


if __name__ == "__main__":
    main()
