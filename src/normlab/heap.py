"""Keep freed memory inside the process on Linux (glibc), so large tensors stop page-faulting every step.

glibc's malloc serves every block of 32 MiB or more with a fresh ``mmap`` and hands it back to the kernel
with ``munmap`` when it is freed (that 32 MiB ceiling on its adaptive threshold cannot be raised). A CPU
training step at batch 256 allocates and frees dozens of such blocks: one 64-channel 32x32 feature map is
exactly 32 MiB in bf16 and 64 MiB in float32. Each comes back from the kernel as untouched pages, so
every step paid for them again in minor page faults, zeroing and TLB work: convmixer-hr2-BN spent about
a third of its CPU time in the kernel and stepped at 617 images/s on random tensors; with the settings
below, 938 (its whole training pipeline, with augmentation, Muon and evaluation: 1.15x; docs/benchmarks.md,
"Memory allocation: page faults at 32x32"). Same arithmetic, same numbers to the bit.

:func:`keep_freed_memory` turns off malloc's use of ``mmap`` (``M_MMAP_MAX`` 0: big blocks come from the
heap and are reused) and its trimming of the heap's top (``M_TRIM_THRESHOLD`` at its maximum). The
process then holds on to its peak memory until it exits, which a training or evaluation run does anyway.
Set ``NORMLAB_MALLOC=system`` to leave malloc as it is. The CLI calls it for every command that computes;
the library never does it behind a caller's back: API users who want it call it once themselves.
"""
from __future__ import annotations

import ctypes
import os
import platform
import sys

M_TRIM_THRESHOLD = -1  # <malloc.h>
M_MMAP_MAX = -4
_INT_MAX = 2**31 - 1
ENV = "NORMLAB_MALLOC"


def on_glibc() -> bool:
    """Whether this process runs on Linux with glibc, the malloc these settings are for."""
    return sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to keep freed memory for reuse; True if it took the settings. A no-op (False)
    off Linux, under another C library, or with ``NORMLAB_MALLOC=system``."""
    if os.environ.get(ENV, "").lower() == "system" or not on_glibc():
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    # mallopt returns 1 on success, 0 on error
    return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, _INT_MAX))
