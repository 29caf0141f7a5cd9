"""Does torch.compile make training faster? Eager against compiled, per (architecture, norm), on this machine.

Each pair trains with the engine's own ``train_epoch`` (the recipe's batch size, augmentation, optimizer
and precision) on random uint8 images, first eagerly, then under torch.compile as ``normlab train
--compile on`` runs it, in a process of its own, as a training run has: several compiled models in one
process run into Dynamo's recompile limit and fall back to eager (and after a compile, eager steps in
the same process have run slower, so eager comes first). Medians of the rounds are reported with the
ratio, and the pairs compiled faster than ``--threshold`` x eager are printed as the entry
``normlab.devices.COMPILE_FASTER`` would hold for this machine class.

    python benchmarks/compile_speed.py [--archs s8] [--norms bn,gn,ln] [--recipe reference] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch

from normlab import build_model
from normlab.devices import cpu_class, cpu_description
from normlab.engine import FullBatchCompiled, train_epoch
from normlab.optim import make_optimizer

from _timing import random_training_data, write_record


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archs", default="s8")
    p.add_argument("--norms", default="bn,gn,ln")
    p.add_argument("--recipe", default="reference")
    p.add_argument("--batch-size", type=int, help="overrides the recipe's")
    p.add_argument("--precision", default="auto")
    p.add_argument("--batches", type=int, default=20, help="training batches per measurement")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threshold", type=float, default=1.05, help="compiled/eager ratio that counts as faster")
    p.add_argument("--json", help="also write the figures and the CPU to this JSON file")
    p.add_argument("--pair", help=argparse.SUPPRESS)  # internal: measure one "arch,norm" in this process
    a = p.parse_args()
    device, precision, recipe, x, y = random_training_data(a.recipe, a.batch_size, a.batches, a.precision)
    n = len(x)
    pairs = [(arch, norm) for arch in a.archs.split(",") for norm in a.norms.split(",")]
    cpu = cpu_description()
    if not a.pair:
        print(f"{cpu['model']} (class {cpu_class(cpu)}), {torch.get_num_threads()} threads, {precision}, recipe "
              f"{recipe.name}, batch {recipe.batch_size}, {n:,} images per measurement, median of {a.rounds}",
              flush=True)

    def setup(arch, norm, compiled):
        torch.manual_seed(0)
        model = build_model(arch, norm).to(memory_format=torch.channels_last)
        opt = make_optimizer(model, recipe)
        step = FullBatchCompiled(model, recipe.batch_size) if compiled else model
        t = time.perf_counter()
        measure(step, opt, 2)  # warm-up: oneDNN picks its kernels; Inductor compiles
        return step, opt, time.perf_counter() - t

    def measure(step, opt, batches=a.batches):
        t = time.perf_counter()
        train_epoch(step, opt, recipe, x[:batches * recipe.batch_size], y[:batches * recipe.batch_size], epoch=0,
                    seed=0, device=device, precision=precision, bar=None)
        return batches * recipe.batch_size / (time.perf_counter() - t)

    if a.pair:  # the child process: one pair, eager then compiled
        arch, norm = a.pair.split(",")
        out = {}
        for compiled in (False, True):
            step, opt, warmup = setup(arch, norm, compiled)
            out[str(compiled)] = ([measure(step, opt) for _ in range(a.rounds)], warmup)
        print("RESULT " + json.dumps(out))
        return
    rates = {}
    for arch, norm in pairs:
        child = ["--recipe", a.recipe, "--precision", precision, "--batches", str(a.batches), "--rounds",
                 str(a.rounds)] + (["--batch-size", str(a.batch_size)] if a.batch_size else [])
        proc = subprocess.run([sys.executable, __file__, *child, "--pair", f"{arch},{norm}"], capture_output=True,
                              text=True)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
        if proc.returncode or not lines:
            print(f"{arch}/{norm} failed:\n{proc.stderr[-2000:]}")
            continue
        for key, (runs, warmup) in json.loads(lines[0][7:]).items():
            rates[(arch, norm), key == "True"] = (statistics.median(runs), runs, warmup)
        print(f"{arch}/{norm} done", flush=True)
    rows, faster = [], {}
    print("\n| arch | norm | eager img/s | compiled img/s | ratio | first compile (s) |\n|---|---|---:|---:|---:|---:|")
    for arch, norm in pairs:
        if ((arch, norm), True) not in rates:
            continue
        eager, compiled = rates[(arch, norm), False], rates[(arch, norm), True]
        ratio = compiled[0] / eager[0]
        print(f"| {arch} | {norm} | {eager[0]:,.0f} | {compiled[0]:,.0f} | {ratio:.2f}x | {compiled[2]:.0f} |")
        rows.append({"arch": arch, "norm": norm, "eager_images_per_second": round(eager[0], 1),
                     "compiled_images_per_second": round(compiled[0], 1), "ratio": round(ratio, 3),
                     "eager_runs": [round(v, 1) for v in eager[1]],
                     "compiled_runs": [round(v, 1) for v in compiled[1]],
                     "first_compile_seconds": round(compiled[2], 1)})
        if ratio >= a.threshold:
            faster.setdefault(arch, []).append(norm)
    print("\nCOMPILE_FASTER entries for this machine class:")
    for arch, norms in faster.items():
        print(f'    ("cpu-{cpu_class(cpu)}", "{precision}", "{arch}", {recipe.batch_size}): frozenset({set(norms)}),')
    if a.json:
        write_record(a.json, {"precision": precision, "recipe": recipe.name, "batch_size": recipe.batch_size,
                              "images_per_measurement": n, "rounds": a.rounds, "threshold": a.threshold,
                              "rows": rows})


if __name__ == "__main__":
    main()
