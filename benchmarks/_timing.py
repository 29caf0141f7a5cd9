"""Shared by the benchmark scripts: CPU-time medians (`weight_average.py`, `optimizer_step.py`), the JSON
record that `--json` writes (`throughput.py`, `compile_speed.py`, `group_norm.py`, `parallel_runs.py`) and
the random training images the training-step benchmarks feed (`compile_speed.py`, `parallel_runs.py`)."""
from __future__ import annotations

import json
import statistics
import sys
import time

import torch

from normlab.devices import cpu_class, cpu_description


def median_cpu_seconds(fn, repeats: int) -> float:
    """The median CPU time of this process (user + system) over ``repeats`` calls of ``fn``."""
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return statistics.median(times)


def command() -> str:
    """This script's command line, as the records and markdown sections name it."""
    return f"python benchmarks/{sys.argv[0].rsplit('/', 1)[-1]} " + " ".join(sys.argv[1:])


def write_record(path: str, fields: dict) -> None:
    """``fields`` to ``path`` as JSON, after what every benchmark figure needs beside it: the date, the
    command, this machine's CPU (model, flags, class), the thread count and torch's version."""
    cpu = cpu_description()
    record = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "command": command(), "cpu": cpu,
              "cpu_class": cpu_class(cpu), "threads": torch.get_num_threads(), "torch": torch.__version__, **fields}
    with open(path, "w") as fh:
        json.dump(record, fh, indent=1)
        fh.write("\n")


def random_training_data(recipe_name: str, batch_size: int | None, batches: int, precision_name: str):
    """(device, precision, recipe, x, y) for timing ``batches`` CPU training steps of a recipe (its batch
    size unless ``batch_size``): random uint8 images and labels, the same on every call."""
    from normlab.devices import resolve_precision
    from normlab.recipes import get_recipe

    device = torch.device("cpu")
    precision = resolve_precision(precision_name, device)
    recipe = get_recipe(recipe_name, **({"batch_size": batch_size} if batch_size else {}))
    n = batches * recipe.batch_size
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=gen)
    y = torch.randint(0, 10, (n,), generator=gen)
    return device, precision, recipe, x, y
