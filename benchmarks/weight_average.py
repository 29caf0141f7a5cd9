"""Cost of weight averaging (`--set ema_epochs=N`): one `WeightAverage.update()` against one training step.

Random images of CIFAR-10's shape, fresh weights, the final models' settings (channels_last, bf16 autocast
where the CPU has it), one thread, CPU seconds of this process (user + system), the median of the repeats
after a warm-up.

    python benchmarks/weight_average.py [--archs convmixer-s16:bn,convmixer-s16:ln] [--batch 256] [--steps 20]
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from _timing import median_cpu_seconds
from normlab.devices import autocast, resolve_precision
from normlab.optim import WeightAverage, make_optimizer
from normlab.models import build_model
from normlab.recipes import get_recipe


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", default="convmixer-s16:bn,convmixer-s16:ln", help="arch:norm pairs")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=20, help="timed repeats of each (after 3 warm-ups)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    cpu = torch.device("cpu")
    precision = resolve_precision("auto", cpu)
    print(f"batch {a.batch}, {precision}, one thread, median CPU ms of {a.steps}")
    print(f"{'model':<20} {'step':>9} {'update':>9} {'update/step':>12}")
    for pair in a.archs.split(","):
        arch, norm = pair.split(":")
        torch.manual_seed(0)
        model = build_model(arch, norm).to(memory_format=torch.channels_last)
        opt = make_optimizer(model, get_recipe("fast"))
        average = WeightAverage(model, ema_epochs=1.0, steps_per_epoch=196)
        x = torch.randn(a.batch, 3, 32, 32).to(memory_format=torch.channels_last)
        y = torch.randint(0, 10, (a.batch,))

        def step():
            with autocast(cpu, precision):
                loss = F.cross_entropy(model(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        for _ in range(3):
            step()
            average.update()
        t_step, t_update = median_cpu_seconds(step, a.steps), median_cpu_seconds(average.update, a.steps)
        print(f"{pair:<20} {1000 * t_step:>9.1f} {1000 * t_update:>9.2f} {100 * t_update / t_step:>11.2f}%")


if __name__ == "__main__":
    main()
