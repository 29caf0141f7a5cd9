"""Shared by the one-thread CPU-time benchmarks (`weight_average.py`, `optimizer_step.py`)."""
from __future__ import annotations

import statistics
import time


def median_cpu_seconds(fn, repeats: int) -> float:
    """The median CPU time of this process (user + system) over ``repeats`` calls of ``fn``."""
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return statistics.median(times)
