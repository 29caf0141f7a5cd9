"""Shared by the benchmark scripts: CPU-time medians (`weight_average.py`, `optimizer_step.py`) and the JSON
record that `--json` writes (`throughput.py`, `compile_speed.py`, `group_norm.py`)."""
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
