"""Devices and numeric precision: which device a run uses, and whether it computes in bfloat16."""
from __future__ import annotations

import contextlib

import torch

from .errors import NormlabError
from .names import COMPILE_MODES

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16")


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def resolve_device(name: str) -> torch.device:
    if name not in DEVICES:
        raise NormlabError(f"unknown device {name!r}; choose {', '.join(DEVICES)}")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if _mps_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise NormlabError("--device cuda: no CUDA GPU is visible to this torch build; use --device cpu")
    if name == "mps" and not _mps_available():
        raise NormlabError("--device mps: Apple's MPS backend is not available here; use --device cpu")
    return torch.device(name)


CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8", "amx_tile")


def cpu_description() -> dict:
    """This machine's CPU model and the vector flags that decide its speed (Linux; 'unknown' elsewhere),
    recorded with every timing: figures from different CPUs do not compare."""
    import platform

    info = {"model": platform.processor() or "unknown", "flags": []}
    try:
        lines = open("/proc/cpuinfo").read().splitlines()
    except OSError:
        return info
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            info["model"] = value.strip()
        elif key.strip() == "flags":
            info["flags"] = [f for f in value.split() if f in CPU_FLAGS]
            break
    return info


def cpu_class(info: dict | None = None) -> str:
    """The machine class a CPU timing belongs to: "amx" (Intel AMX bf16 tiles), "avx512-bf16" (e.g. AMD
    EPYC Zen 4), "avx512", "avx2" or "other". Speed tables in docs/benchmarks.md are kept per class."""
    flags = set((info or cpu_description())["flags"])
    if "amx_bf16" in flags:
        return "amx"
    if "avx512_bf16" in flags:
        return "avx512-bf16"
    if "avx512f" in flags:
        return "avx512"
    return "avx2" if "avx2" in flags else "other"


# Where ``--compile auto`` compiles: (device class, precision, arch, batch size) -> the norms whose training
# step ran faster compiled than eager there, by at least 5% (``python benchmarks/compile_speed.py``,
# results/benchmarks/compile-*.json, docs/benchmarks.md "torch.compile"). Everything else -- other CPUs,
# GPUs, other architectures and batch sizes, plugin norms -- stays eager: a compile costs 10-60 s before
# the first step. The convmixer nets gained nothing compiled on the Xeon (LN; GN in float32) or have no
# full run yet to confirm their accuracy compiled (GN in bf16 1.5x, BN 1.1x; docs/benchmarks.md).
COMPILE_FASTER: dict[tuple[str, str, str, int], frozenset[str]] = {
    # compile-s8-amx.json: 1.4-4.3x for every built-in norm but "none" (0.5x)
    ("cpu-amx", "bf16", "s8", 128): frozenset({"bn", "gn", "ln", "in", "ln2d", "rms", "gn-ws", "brn", "frn",
                                               "evonorm-s0"}),
    # compile-s8-b4-amx.json (the leaderboard's tiny batch): 1.1-2.3x; not ln (1.01x), brn (0.95x), none (0.75x)
    ("cpu-amx", "bf16", "s8", 4): frozenset({"bn", "gn", "in", "ln2d", "rms", "gn-ws", "frn", "evonorm-s0"}),
    # compile-s8-b4-avx512-bf16.json (AMD EPYC, one thread, as the leaderboard's batch-4 runs train):
    # 1.3-3.3x; not gn (1.04x), in (0.83x), none (0.48x)
    ("cpu-avx512-bf16", "bf16", "s8", 4): frozenset({"bn", "ln", "ln2d", "rms", "gn-ws", "brn", "frn",
                                                     "evonorm-s0"}),
}


def compile_mode(mode: "str | bool") -> str:
    """``mode`` as one of COMPILE_MODES (the API's booleans: True is on, False off), or a one-line error."""
    if isinstance(mode, bool):
        return "on" if mode else "off"
    if mode not in COMPILE_MODES:
        raise NormlabError(f"unknown compile mode {mode!r}; choose {', '.join(COMPILE_MODES)}")
    return mode


def resolve_compile(mode: "str | bool", device: torch.device, arch: str, norm: str, precision: str,
                    batch_size: int) -> bool:
    """Whether a run compiles its model: ``on``/``off`` as asked; ``auto`` as $NORMLAB_COMPILE says where
    it is set (on/off), else where COMPILE_FASTER lists this device class, precision, architecture, batch
    size (per process) and norm."""
    import os

    mode = compile_mode(mode)
    if mode == "auto" and os.environ.get("NORMLAB_COMPILE"):
        mode = os.environ["NORMLAB_COMPILE"]
        if mode not in COMPILE_MODES:
            raise NormlabError(f"NORMLAB_COMPILE={mode!r} is not a compile mode; set it to "
                               f"{', '.join(COMPILE_MODES)} or unset it")
    if mode != "auto":
        return mode == "on"
    if device.type == "cpu" and not cpu_compiler():
        return False  # Inductor writes C++ for the CPU: without a compiler, torch.compile fails
    where = f"cpu-{cpu_class()}" if device.type == "cpu" else device.type
    return norm in COMPILE_FASTER.get((where, precision, arch, batch_size), ())


def cpu_compiler() -> str | None:
    """The C++ compiler torch.compile would use on the CPU (Linux: $CXX, else g++ or clang++), or None."""
    import os
    import shutil
    import sys

    if not sys.platform.startswith("linux"):
        return None  # measured on Linux only
    for name in (os.environ.get("CXX"), "g++", "clang++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def cpu_supports_bf16() -> bool:
    """True where oneDNN has native bfloat16 kernels (AVX512-BF16 or AMX); elsewhere bf16 is emulated
    and slower than float32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


# On a CPU without native bf16 kernels a bf16 convmixer-fr32-LN step ran at 17 images/s against 220 in
# float32 (docs/benchmarks.md). Warned, not refused: a run may want bf16's rounding.
EMULATED_BF16 = ("normlab: warning: this CPU has no native bfloat16 kernels (AVX512-BF16 or AMX), so bf16 is "
                 "emulated and over 10x slower than float32 here; use --precision fp32 (or auto, which picks it)")


# Where ``--precision auto`` trains in float32 although the CPU has native bf16: (CPU class, arch, norm)
# measured faster in float32 (docs/benchmarks.md, "Precision"). PyTorch's CPU GroupNorm with several
# groups is slow in bf16, and on the convmixer nets, whose norms run on wide 16x16 and 32x32 maps, that
# outweighs the bf16 convolutions on the Xeon: convmixer-fr32-GN 553/552 images/s in float32 against
# 428/491 in bf16, convmixer-s16-GN 742/723 against 500/593. On the AVX512-BF16 EPYC bf16 was faster for
# GN as well, and S8-GN is faster in bf16 everywhere measured.
FP32_FASTER: frozenset[tuple[str, str, str]] = frozenset({
    ("amx", "convmixer-fr32", "gn"), ("amx", "convmixer-s16", "gn"),
})


def resolve_precision(name: str, device: torch.device, arch: str | None = None, norm: str | None = None) -> str:
    """``fp32``/``bf16`` as asked; ``auto``: bf16 on a GPU that has it and on a CPU with native bf16
    kernels, except where FP32_FASTER lists this CPU class, ``arch`` and ``norm``; else float32."""
    if name not in PRECISIONS:
        raise NormlabError(f"unknown precision {name!r}; choose {', '.join(PRECISIONS)}")
    if name != "auto":
        return name
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu":
        if not cpu_supports_bf16() or (cpu_class(), arch, norm) in FP32_FASTER:
            return "fp32"
        return "bf16"
    return "fp32"


def autocast(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_input(x_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> float32 in [0, 1], channels_last."""
    return x_uint8.float().div_(255).contiguous(memory_format=torch.channels_last)
