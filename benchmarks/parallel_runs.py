"""One run with every thread, or several runs at once with a thread each? Training throughput both ways.

On a machine with few cores and a small step (S8 at batch 4), one run cannot keep several threads busy:
the per-step overhead (Python, kernel launches, the optimizer) does not shrink with threads. Several
single-thread runs side by side (what ``normlab leaderboard --backend ray`` does on one machine) may then
do more work in all. This script measures both on random uint8 images with the engine's own
``train_epoch`` (the recipe's batch, optimizer and precision, eager): first one process with ``--threads``
threads alone, then ``--runs`` processes at once with ``threads / runs`` threads each, and reports the
summed images/s of each arrangement and their ratio.

    python benchmarks/parallel_runs.py [--arch s8] [--norm bn] [--recipe reference] [--batch-size 4]
                                       [--runs 2] [--threads 2] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch

from _timing import random_training_data, write_record


def child(a) -> None:
    """One measuring process: its thread count is set before any work, as a Ray task's is."""
    torch.set_num_threads(a.child)
    from normlab import build_model
    from normlab.engine import train_epoch
    from normlab.optim import make_optimizer

    device, precision, recipe, x, y = random_training_data(a.recipe, a.batch_size, a.batches, a.precision)
    torch.manual_seed(0)
    model = build_model(a.arch, a.norm).to(memory_format=torch.channels_last)
    opt = make_optimizer(model, recipe)

    def measure(batches):
        t = time.perf_counter()
        train_epoch(model, opt, recipe, x[:batches * recipe.batch_size], y[:batches * recipe.batch_size],
                    epoch=0, seed=0, device=device, precision=precision, bar=None)
        return batches * recipe.batch_size / (time.perf_counter() - t)

    measure(min(a.batches, 50))  # warm-up: oneDNN picks its kernels
    rates = [measure(a.batches) for _ in range(a.rounds)]
    print(json.dumps({"images_per_s": statistics.median(rates), "precision": precision,
                      "batch_size": recipe.batch_size}), flush=True)


def run_together(a, processes: int, threads: int) -> list[dict]:
    cmd = [sys.executable, __file__, "--child", str(threads)] + [
        f"--{k.replace('_', '-')}={v}" for k, v in vars(a).items()
        if k not in ("child", "json", "runs", "threads") and v is not None]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(processes)]
    outs = [p.communicate()[0] for p in procs]
    if any(p.returncode for p in procs):
        sys.exit("a measuring process failed")
    return [json.loads(o.strip().splitlines()[-1]) for o in outs]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="s8")
    p.add_argument("--norm", default="bn")
    p.add_argument("--recipe", default="reference")
    p.add_argument("--batch-size", type=int, default=4, help="overrides the recipe's (default 4)")
    p.add_argument("--precision", default="auto")
    p.add_argument("--batches", type=int, default=500, help="training batches per measurement")
    p.add_argument("--rounds", type=int, default=3, help="measurements per process (the median is kept)")
    p.add_argument("--runs", type=int, default=2, help="processes side by side")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(),
                   help="threads of the single run, shared out among the side-by-side ones")
    p.add_argument("--json", help="also write the figures and the CPU to this JSON file")
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)  # internal: measure in this process
    a = p.parse_args()
    if a.child:
        return child(a)
    if a.threads % a.runs:
        sys.exit(f"--threads {a.threads} does not share out among --runs {a.runs}; pick a multiple")
    one = run_together(a, 1, a.threads)[0]
    many = run_together(a, a.runs, a.threads // a.runs)
    total = sum(m["images_per_s"] for m in many)
    each = ", ".join(f"{m['images_per_s']:.1f}" for m in many)
    print(f"{a.arch}/{a.norm}, recipe {a.recipe}, batch {one['batch_size']}, {one['precision']}, eager")
    print(f"1 run x {a.threads} threads:  {one['images_per_s']:8.1f} images/s")
    print(f"{a.runs} runs x {a.threads // a.runs} thread(s): {total:8.1f} images/s in all "
          f"({each})")
    print(f"ratio: {total / one['images_per_s']:.2f}x")
    if a.json:
        write_record(a.json, {"arch": a.arch, "norm": a.norm, "recipe": a.recipe, "batch_size": one["batch_size"],
                              "precision": one["precision"], "batches": a.batches, "rounds": a.rounds,
                              "one_run": {"threads": a.threads, "images_per_s": one["images_per_s"]},
                              "side_by_side": {"runs": a.runs, "threads_each": a.threads // a.runs,
                                               "images_per_s": [m["images_per_s"] for m in many],
                                               "total": total},
                              "ratio": total / one["images_per_s"]})


if __name__ == "__main__":
    main()
