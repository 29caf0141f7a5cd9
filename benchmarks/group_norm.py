"""GroupNorm forward + backward per layer shape on the CPU: PyTorch's kernel, normlab's eager layer, and
both under torch.compile with normlab's compile options (where normlab's layer runs
``normlab.fused.group_norm``).

Shapes are those S8 and the convmixer nets train with at batch 128, channels_last, in float32 and in
bfloat16 (as autocast hands the norm a bf16 convolution output). Each variant is timed over ``--reps``
calls after a warm-up, interleaved over ``--rounds``; the median per call is reported in milliseconds.

    python benchmarks/group_norm.py [--rounds 3] [--reps 10] [--json FILE]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from normlab.devices import cpu_class, cpu_description
from normlab.engine import COMPILE_OPTIONS
from normlab.norms import GroupNorm

from _timing import write_record

# (label, batch, channels, size, groups): S8's GN layers (groups as the reference's) and convmixer's
SHAPES = [
    ("S8 C1/C2", 128, 32, 32, 4),
    ("S8 C5/C6", 128, 32, 16, 8),
    ("S8 C8-C10", 128, 32, 8, 4),
    ("S8 LN at 32x32", 128, 32, 32, 1),
    ("convmixer 16x16", 128, 64, 16, 8),
    ("convmixer-fr32 32x32", 128, 32, 32, 4),
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--json", help="also write the figures and the CPU to this JSON file")
    a = p.parse_args()
    torch.manual_seed(0)
    variants = {
        "pytorch eager": lambda g, c: nn.GroupNorm(g, c),
        "normlab eager": lambda g, c: GroupNorm(g, c),
        "pytorch compiled": lambda g, c: torch.compile(nn.GroupNorm(g, c), dynamic=False, options=COMPILE_OPTIONS),
        "normlab compiled": lambda g, c: torch.compile(GroupNorm(g, c), dynamic=False, options=COMPILE_OPTIONS),
    }
    cpu = cpu_description()
    print(f"{cpu['model']} (class {cpu_class(cpu)}), {torch.get_num_threads()} threads; ms per forward + backward, "
          f"median of {a.rounds} rounds x {a.reps} calls\n")
    print("| shape (N, C, H=W, groups) | dtype | " + " | ".join(variants) + " |")
    print("|---|---|" + "---:|" * len(variants))
    rows = []
    for label, n, c, s, g in SHAPES:
        for dtype in (torch.float32, torch.bfloat16):
            x = torch.randn(n, c, s, s).to(dtype).contiguous(memory_format=torch.channels_last).requires_grad_()
            dy = torch.randn(n, c, s, s).to(dtype).contiguous(memory_format=torch.channels_last)
            torch._dynamo.reset()  # fresh compiles: all shapes share one forward, over Dynamo's recompile limit
            layers = {name: make(g, c) for name, make in variants.items()}

            def call(layer):
                out = layer(x)
                out.backward(dy.to(out.dtype))

            for layer in layers.values():
                for _ in range(3):
                    call(layer)  # warm-up (and compile)
            times = {name: [] for name in layers}
            for _ in range(a.rounds):
                for name, layer in layers.items():
                    t = time.perf_counter()
                    for _ in range(a.reps):
                        call(layer)
                    times[name].append((time.perf_counter() - t) / a.reps * 1e3)
            ms = {name: statistics.median(v) for name, v in times.items()}
            dname = "bf16" if dtype == torch.bfloat16 else "fp32"
            print(f"| {label} ({n}, {c}, {s}, {g}) | {dname} | " + " | ".join(f"{v:.2f}" for v in ms.values()) + " |",
                  flush=True)
            rows.append({"shape": label, "batch": n, "channels": c, "size": s, "groups": g, "dtype": dname,
                         "ms": {k: round(v, 3) for k, v in ms.items()}})
    if a.json:
        write_record(a.json, {"rows": rows})


if __name__ == "__main__":
    main()
