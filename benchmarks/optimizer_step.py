"""Cost of the optimizer: one `opt.step()` with SGD against Muon-on-the-pointwise-convs (`optimizer=muon`),
and against a whole training step.

Random images of CIFAR-10's shape, fresh weights, channels_last, bf16 autocast where the CPU has it, one
thread, CPU seconds of this process (user + system), the median of the repeats after a warm-up.

    python benchmarks/optimizer_step.py [--archs convmixer-s16:bn,convmixer-fr32:ln] [--batch 128] [--steps 20]
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from _timing import median_cpu_seconds
from normlab.devices import autocast, resolve_precision
from normlab.optim import make_optimizer
from normlab.models import build_model
from normlab.recipes import get_recipe


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", default="convmixer-s16:bn,convmixer-fr32:ln", help="arch:norm pairs")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=20, help="timed repeats of each (after 3 warm-ups)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    cpu = torch.device("cpu")
    precision = resolve_precision("auto", cpu)
    print(f"batch {a.batch}, {precision}, one thread, median CPU ms of {a.steps}")
    print(f"{'model':<20} {'optimizer':<10} {'opt.step':>9} {'train step':>11} {'share':>7}")
    for pair in a.archs.split(","):
        arch, norm = pair.split(":")
        for name in ("sgd", "muon"):
            torch.manual_seed(0)
            model = build_model(arch, norm).to(memory_format=torch.channels_last)
            opt = make_optimizer(model, get_recipe("fast", optimizer=name))
            x = torch.randn(a.batch, 3, 32, 32).to(memory_format=torch.channels_last)
            y = torch.randint(0, 10, (a.batch,))

            def train_step():
                with autocast(cpu, precision):
                    loss = F.cross_entropy(model(x).float(), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

            for _ in range(3):
                train_step()
            step_ms = 1000 * median_cpu_seconds(opt.step, a.steps)  # the same gradients every time: cost only
            whole_ms = 1000 * median_cpu_seconds(train_step, a.steps)
            print(f"{arch + ':' + norm:<20} {name:<10} {step_ms:>9.2f} {whole_ms:>11.1f} {step_ms / whole_ms:>7.1%}")


if __name__ == "__main__":
    main()
