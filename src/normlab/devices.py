"""Devices and numeric precision: which device a run uses, and whether it computes in bfloat16."""
from __future__ import annotations

import contextlib

import torch

from .errors import NormlabError

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


def resolve_precision(name: str, device: torch.device) -> str:
    if name not in PRECISIONS:
        raise NormlabError(f"unknown precision {name!r}; choose {', '.join(PRECISIONS)}")
    if name != "auto":
        return name
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu":
        return "bf16" if cpu_supports_bf16() else "fp32"
    return "fp32"


def autocast(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_input(x_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> float32 in [0, 1], channels_last."""
    return x_uint8.float().div_(255).contiguous(memory_format=torch.channels_last)
