"""Training throughput of candidate architectures on random tensors (no data set needed).

One optimizer step = the engine's: uint8 -> float channels_last input, autocast (bf16 where the CPU has
it), forward, cross-entropy, backward, SGD (nesterov, weight decay). Candidates are *interleaved*: each
round measures every (candidate, norm) pair for a few steps, and the median over rounds is reported, so
a background job that comes and goes disturbs every candidate alike. Compare numbers within one run.

    python benchmarks/arch_throughput.py [--batch 256] [--steps 3] [--rounds 3] [--norms bn,gn,ln] [--cpu-time] [--compile]

Like `normlab train`, it keeps freed memory in the process (normlab.heap); NORMLAB_MALLOC=system
measures with glibc's default malloc instead.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from normlab.devices import autocast, cpu_supports_bf16, to_input
from normlab.heap import keep_freed_memory
from normlab.models import build_model, count_params
from normlab.models.convmixer import ConvMixer
from normlab.models.resnet import ResNet
from normlab.summary import forward_macs


CANDIDATES = {
    "s8": lambda norm: build_model("s8", norm),
    "A full 24|32r|72": lambda norm: ResNet(norm, stem=24, stem_blocks=0, widths=(32, 72), blocks=(1, 0)),
    "B resnet8 16r|32r|72": lambda norm: build_model("resnet8", norm),
    "B resnet8-ws": lambda norm: build_model("resnet8-ws", norm),
    "C sep 32|48r|64r|88r": lambda norm: ResNet(norm, stem=32, stem_blocks=0, widths=(48, 64, 88), blocks=(1, 1, 1),
                                                block="sep"),
    "D sepresnet8 32|64r|112r": lambda norm: build_model("sepresnet8", norm),
    "E convmixer 64 x9 k3": lambda norm: build_model("convmixer", norm),
    "E' mixer 64 x8 k5": lambda norm: ConvMixer(norm, depth=8, kernel=5),
    "F convmixer + stem 16": lambda norm: ConvMixer(norm, stem=16),
    "G convmixer-fr32": lambda norm: build_model("convmixer-fr32", norm),
    "G' fr24 x2": lambda norm: ConvMixer(norm, stem=24, stem_blocks=2),
    "H convmixer-hr2": lambda norm: build_model("convmixer-hr2", norm),
    "H convmixer-hr2-s48": lambda norm: build_model("convmixer-hr2-s48", norm),
    "H hr3": lambda norm: build_model("convmixer-hr3", norm),
    "H hr4": lambda norm: ConvMixer(norm, stem=32, hr_blocks=4),
    "H hr5": lambda norm: ConvMixer(norm, stem=32, hr_blocks=5),
}


def step_time(model, opt, x, y, precision: str, steps: int, clock=time.perf_counter) -> float:
    device = torch.device("cpu")
    t = clock()
    for _ in range(steps):
        with autocast(device, precision):
            loss = F.cross_entropy(model(to_input(x)).float(), y, label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return (clock() - t) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per pair per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--norms", default="bn,gn,ln")
    ap.add_argument("--only", help="comma-separated candidate names (default: all)")
    ap.add_argument("--precision", default="bf16" if cpu_supports_bf16() else "fp32")
    ap.add_argument("--compile", action="store_true",
                    help="time each pair under torch.compile (as `normlab train --compile`) instead of "
                         "eagerly; the warm-up steps compile. Compare with an eager run in its own process: "
                         "in one process, after a cold compile, eager steps ran at 0.7x their speed")
    ap.add_argument("--cpu-time", action="store_true",
                    help="one thread, timed by the process's CPU time instead of the wall clock: far less "
                         "disturbed by other jobs on a busy machine; reports images per CPU-second")
    a = ap.parse_args()
    heap = "malloc keeps freed memory" if keep_freed_memory() else "system malloc"  # as `normlab train` does
    clock = time.perf_counter
    if a.cpu_time:
        torch.set_num_threads(1)
        clock = time.process_time
    names = a.only.split(",") if a.only else list(CANDIDATES)
    norms = a.norms.split(",")
    torch.manual_seed(0)
    x = torch.randint(0, 256, (a.batch, 3, 32, 32), dtype=torch.uint8)
    y = torch.randint(0, 10, (a.batch,))
    setups = {}
    for name in names:
        for norm in norms:
            model = CANDIDATES[name](norm)
            info = (count_params(model), forward_macs(model))
            model = model.train().to(memory_format=torch.channels_last)
            opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
            step = torch.compile(model) if a.compile else model
            step_time(step, opt, x, y, a.precision, 2)  # warm-up: oneDNN picks its kernels (and compiles)
            setups[name, norm] = (step, opt, info, [])
    for r in range(a.rounds):
        for key, (model, opt, _, times) in setups.items():
            times.append(step_time(model, opt, x, y, a.precision, a.steps, clock))
        print(f"round {r + 1}/{a.rounds} done", flush=True)
    unit = "img per CPU-second" if a.cpu_time else "img/s"
    print(f"\nbatch {a.batch}, {a.precision}{', compiled' if a.compile else ''}, {torch.get_num_threads()} threads, "
          f"{heap}, {unit}, median of {a.rounds} "
          f"rounds x {a.steps} steps\n")
    print(f"| candidate | norm | params | MMAC/img | {unit} |")
    print("|---|---|---:|---:|---:|")
    for (name, norm), (_, _, (params, macs), times) in setups.items():
        print(f"| {name} | {norm} | {params:,} | {macs / 1e6:.1f} | {a.batch / statistics.median(times):,.0f} |")


if __name__ == "__main__":
    main()
