"""normlab.heap: glibc malloc keeps freed memory, so big tensors stop page-faulting at every allocation."""
import os
import subprocess
import sys

import pytest

from normlab import heap

# Allocate, fill and free a 64 MiB tensor (over glibc's 32 MiB mmap ceiling) twelve times; print whether the
# settings took and the minor page faults of the last four rounds. With the settings the heap grows by a
# block in some of the first rounds (small allocations in between can split a freed block, so how many
# varies: four of the first five rounds in the worst of five probes) and then reuses its blocks; rounds 9-12
# took 0 faults in 25 probes. With glibc's defaults every round faults in all 16,384 pages afresh (65,540
# over rounds 9-12).
PROBE = """
import resource, torch
from normlab.heap import keep_freed_memory
took = keep_freed_memory()
for i in range(12):
    if i == 8:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t = torch.ones(16 * 2**20)
    del t
print(took, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""

glibc_linux = pytest.mark.skipif(not heap.on_glibc(), reason="glibc's malloc only")


def _probe(env_value: str | None) -> tuple[str, int]:
    env = {k: v for k, v in os.environ.items() if k != heap.ENV}
    if env_value is not None:
        env[heap.ENV] = env_value
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    took, faults = out.stdout.split()
    return took, int(faults)


@glibc_linux
def test_a_reallocated_large_tensor_settles_into_reusing_memory_without_page_faults():
    took, faults = _probe(None)
    assert took == "True"
    assert faults < 1000, f"{faults} minor page faults refilling a 64 MiB tensor four times (16,384 pages each)"


@glibc_linux
def test_normlab_malloc_system_leaves_malloc_alone():
    took, _ = _probe("system")
    assert took == "False"


def test_off_glibc_it_does_nothing(monkeypatch):
    monkeypatch.setattr(heap.platform, "libc_ver", lambda: ("", ""))
    assert heap.keep_freed_memory() is False
