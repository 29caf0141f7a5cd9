"""Cost of one depthwise convolution by kernel size, against its multiply-adds (random tensors, CPU).

The shape is `convmixer`'s block: 64 channels at 16x16, batch 128, channels_last, forward and backward.
One thread, timed by the process's CPU time (so another job on the machine disturbs it little); the best
of a few repeats after a warm-up. Depthwise kernels on this CPU are far from proportional to their
multiply-adds, which is why `convmixer` uses 3x3 (see docs/architectures.md).

    python benchmarks/depthwise.py [--kernels 3,5,7] [--precisions fp32,bf16] [--repeats 5]
"""
from __future__ import annotations

import argparse
import time

import torch

from normlab.devices import autocast


def layer_time(kernel: int, precision: str, batch: int, channels: int, size: int, repeats: int) -> float:
    """Best CPU seconds of one forward + backward of a depthwise ``kernel`` x ``kernel`` conv."""
    conv = torch.nn.Conv2d(channels, channels, kernel, padding=kernel // 2, groups=channels, bias=False)
    conv = conv.to(memory_format=torch.channels_last)
    x = torch.randn(batch, channels, size, size).contiguous(memory_format=torch.channels_last).requires_grad_()
    best = float("inf")
    for i in range(repeats + 1):  # the first is a warm-up: oneDNN picks its kernels
        t = time.process_time()
        with autocast(torch.device("cpu"), precision):
            out = conv(x)
        out.float().sum().backward()
        if i:
            best = min(best, time.process_time() - t)
        conv.zero_grad(set_to_none=True)
        x.grad = None
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kernels", default="3,5,7")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--size", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    kernels = [int(k) for k in a.kernels.split(",")]
    print(f"depthwise conv, batch {a.batch}, {a.channels} channels at {a.size}x{a.size}, channels_last, forward "
          f"+ backward, 1 thread, best of {a.repeats} (CPU time)\n")
    k0 = kernels[0]
    print(f"| kernel | precision | ms | x the {k0}x{k0} time | x the {k0}x{k0} multiply-adds |")
    print("|---:|---|---:|---:|---:|")
    for precision in a.precisions.split(","):
        base = None
        for k in kernels:
            ms = 1000 * layer_time(k, precision, a.batch, a.channels, a.size, a.repeats)
            if base is None:
                base = ms
            print(f"| {k}x{k} | {precision} | {ms:.1f} | {ms / base:.1f} | {k * k / k0 ** 2:.1f} |",
                  flush=True)


if __name__ == "__main__":
    main()
