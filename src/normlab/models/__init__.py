"""Architecture registry: a name -> a function of the norm name returning an nn.Module."""
from __future__ import annotations

from typing import Callable

from torch import nn

from ..errors import NormlabError
from ..norms import USER_NORMS
from .convmixer import (convmixer, convmixer_fr32, convmixer_fr32_d10, convmixer_fr32_gelu, convmixer_hr2,
                        convmixer_hr2_s48, convmixer_hr3, convmixer_s16, convmixer_s16_res, convmixer_ws)
from .resnet import resnet8, resnet8_ws, sepresnet8
from .s8 import s8, s8_reference_ln

ARCHS: dict[str, Callable[[str], nn.Module]] = {
    "s8": s8,
    "s8-reference-ln": s8_reference_ln,
    "resnet8": resnet8,          # residual, full 3x3 convs (docs/architectures.md)
    "resnet8-ws": resnet8_ws,    # the same with weight-standardized convs (for gn/ln)
    "sepresnet8": sepresnet8,    # residual, depthwise-separable convs
    "convmixer": convmixer,      # ConvMixer-style: 9 depthwise + pointwise blocks at 16x16
    "convmixer-ws": convmixer_ws,  # the same with weight-standardized embedding and pointwise convs
    "convmixer-s16": convmixer_s16,  # the same after a full-resolution 3x3 stem conv to 16 channels
    "convmixer-s16-res": convmixer_s16_res,  # convmixer-s16 with residual pointwise convs too
    "convmixer-fr32": convmixer_fr32,  # convmixer after a full-resolution stage of width 32
    "convmixer-fr32-d10": convmixer_fr32_d10,  # the same, 10 blocks of width 60 instead of 9 of 64
    "convmixer-fr32-gelu": convmixer_fr32_gelu,  # the same with GELU instead of ReLU
    "convmixer-hr2": convmixer_hr2,  # convmixer with its first 2 blocks at 32x32 (stem 32, 1x1 to 64)
    "convmixer-hr2-s48": convmixer_hr2_s48,  # the same with a stem of 48 channels
    "convmixer-hr3": convmixer_hr3,  # convmixer-hr2 with 3 of its 9 blocks at 32x32
}
# Architectures that exist for one norm only.
ARCH_NORMS: dict[str, tuple[str, ...]] = {"s8-reference-ln": ("ln",)}


def build_model(arch: str = "s8", norm: str = "bn") -> nn.Module:
    """Build ``arch`` with ``norm`` layers. The module maps float images in [0, 1], (N, 3, 32, 32), to
    logits (N, 10); input normalization is inside it."""
    if arch not in ARCHS:
        raise NormlabError(f"unknown arch {arch!r}; choose one of {', '.join(ARCHS)}")
    allowed = ARCH_NORMS.get(arch, USER_NORMS)
    if norm not in allowed:
        raise NormlabError(f"arch {arch!r} does not take norm {norm!r}; choose one of {', '.join(allowed)}")
    return ARCHS[arch](norm)


def count_params(model: nn.Module) -> int:
    """Every parameter, trainable or frozen: the budgeted figure."""
    return sum(p.numel() for p in model.parameters())
