"""Training speed with and without the channels_last gradient at the global average pool.

``normlab.models.common.GlobalAvgPool`` hands its input gradient back in channels_last
(``normlab.layout.channels_last_grad``); a plain pool or mean hands it back NCHW, and every layer
before it then runs its backward on mixed layouts. This script times one optimizer step as the engine
takes it (``step_time`` from ``arch_throughput.py``: uint8 -> channels_last float, autocast, label
smoothing, SGD nesterov + weight decay) both ways, on random tensors, interleaved round by round, and
prints the median images/s. The "NCHW gradient" column is the pool as it was before: the layout helper
is replaced by the identity for those steps.

    python benchmarks/gap_grad_layout.py [--rounds 6] [--steps 3]
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

import normlab.models.common as common
from normlab.devices import cpu_supports_bf16
from normlab.models import build_model

sys.path.insert(0, str(Path(__file__).parent))
from arch_throughput import step_time  # noqa: E402

BF16 = "bf16" if cpu_supports_bf16() else "fp32"
# (arch, norm, batch, precision): each final model as its recipe trains it, plus S8, resnet8 and the
# residual-pointwise variant, whose every skip carries the pool's gradient.
CASES = [("convmixer-s16", "bn", 256, BF16), ("convmixer-s16", "gn", 128, "fp32"),
         ("convmixer-s16", "ln", 128, BF16), ("convmixer-s16-res", "bn", 256, BF16),
         ("convmixer-s16-res", "ln", 128, BF16), ("resnet8", "bn", 256, BF16), ("s8", "bn", 128, BF16)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per case and layout per round")
    a = ap.parse_args()
    fixed = common.channels_last_grad
    layouts = {"NCHW gradient": lambda x: x, "channels_last gradient": fixed}
    torch.manual_seed(0)
    setups = {}
    for arch, norm, batch, precision in CASES:
        model = build_model(arch, norm).train().to(memory_format=torch.channels_last)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
        x = torch.randint(0, 256, (batch, 3, 32, 32), dtype=torch.uint8)
        y = torch.randint(0, 10, (batch,))
        setups[arch, norm, batch, precision] = (model, opt, x, y, {k: [] for k in layouts})
    for r in range(a.rounds):
        for (arch, norm, batch, precision), (model, opt, x, y, times) in setups.items():
            for name, fn in layouts.items():
                common.channels_last_grad = fn
                step_time(model, opt, x, y, precision, 1)  # warm-up after the switch
                times[name].append(step_time(model, opt, x, y, precision, a.steps))
        common.channels_last_grad = fixed
        print(f"round {r + 1}/{a.rounds} done", flush=True)
    print(f"\n{torch.get_num_threads()} threads, images/s, median of {a.rounds} rounds x {a.steps} steps\n")
    print("| arch | norm | batch | precision | " + " | ".join(layouts) + " | speed-up |")
    print("|---|---|---:|---|" + "---:|" * (len(layouts) + 1))
    for (arch, norm, batch, precision), (*_, times) in setups.items():
        speeds = [batch / statistics.median(times[k]) for k in layouts]
        print(f"| {arch} | {norm} | {batch} | {precision} | "
              + " | ".join(f"{s:,.0f}" for s in speeds) + f" | {speeds[-1] / speeds[0]:.2f}x |")


if __name__ == "__main__":
    main()
