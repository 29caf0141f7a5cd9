"""normlab.heap: glibc malloc keeps freed memory, so big tensors stop page-faulting at every allocation."""
import os
import subprocess
import sys

import pytest

from normlab import heap

# Allocate, fill and free a 64 MiB tensor (over glibc's 32 MiB mmap ceiling) sixteen times; print whether the
# settings took and the minor page faults of each of the last eight rounds. With the settings the heap
# grows by a block in some rounds (small allocations in between can split a freed block, so how many and
# when varies: one CI run saw a round among the last four grow) and otherwise reuses its blocks; with
# glibc's defaults every round faults in all 16,384 pages afresh. So the test judges the median round.
PROBE = """
import resource, torch
from normlab.heap import keep_freed_memory
took = keep_freed_memory()
faults = []
for i in range(16):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t = torch.ones(16 * 2**20)
    del t
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(took, *faults[8:])
"""

glibc_linux = pytest.mark.skipif(not heap.on_glibc(), reason="glibc's malloc only")


def _probe(env_value: str | None) -> tuple[str, list[int]]:
    env = {k: v for k, v in os.environ.items() if k != heap.ENV}
    if env_value is not None:
        env[heap.ENV] = env_value
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    took, *faults = out.stdout.split()
    return took, sorted(map(int, faults))


@glibc_linux
def test_a_reallocated_large_tensor_settles_into_reusing_memory_without_page_faults():
    took, faults = _probe(None)
    assert took == "True"
    median = faults[len(faults) // 2]
    assert median < 1000, f"rounds 9-16 took {faults} minor page faults refilling a 64 MiB tensor (16,384 pages)"


@glibc_linux
def test_normlab_malloc_system_leaves_malloc_alone():
    took, faults = _probe("system")
    assert took == "False"
    assert faults[len(faults) // 2] >= 16_000  # glibc's defaults fault every page in afresh: the test can fail


def test_off_glibc_it_does_nothing(monkeypatch):
    monkeypatch.setattr(heap.platform, "libc_ver", lambda: ("", ""))
    assert heap.keep_freed_memory() is False
