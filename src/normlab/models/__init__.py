"""Architecture registry: a name -> a builder taking a norm-layer factory (normlab.norms).

The public registry holds what ships or backs a headline result; experiment-only architectures live in
:mod:`normlab.experimental.archs` and are found by the same lookups, so committed runs of them still load.
"""
from __future__ import annotations

from typing import Callable

from torch import nn

from ..errors import NormlabError
from ..names import ARCH_NAMES
from ..norms import NormLayer, check_norm, get_norm_layer
from .convmixer import convmixer_fr32, convmixer_hr2, convmixer_s16
from .s8 import s8, s8_reference_ln

Builder = Callable[[NormLayer], nn.Module]

ARCHS: dict[str, Builder] = {
    "s8": s8,                        # the reference study's network, exactly as specified
    "s8-reference-ln": s8_reference_ln,  # the reference's own (over-budget) Layer Norm model
    "convmixer-s16": convmixer_s16,  # ConvMixer-style, 16-channel full-resolution stem: GN's best
    "convmixer-fr32": convmixer_fr32,  # the same after a width-32 full-resolution stage: LN's best
    "convmixer-hr2": convmixer_hr2,  # its first two width-64 blocks at full resolution: BN's best
}
assert tuple(ARCHS) == ARCH_NAMES, "normlab.names.ARCH_NAMES lists the public architectures for the CLI"
# Names the architectures had when the first committed runs were trained; their weights files carry them.
# The nets are the same (the weights load unchanged), so those names still build them.
RENAMED = {"mix64d9k3p2": "convmixer", "mix64d9k3p2s16": "convmixer-s16"}
# Architectures built for one norm only: the user's norm name -> the layer they are built with.
ARCH_NORMS: dict[str, dict[str, str]] = {"s8-reference-ln": {"ln": "ln-elementwise"}}


def all_archs() -> dict[str, Builder]:
    """The public architectures, then the experimental ones."""
    from ..experimental.archs import ARCHS as EXPERIMENTAL

    return {**ARCHS, **EXPERIMENTAL}


def check_arch(arch: str) -> str:
    """``arch`` if it is registered (publicly or in normlab.experimental); else a one-line error."""
    if arch not in all_archs():
        raise NormlabError(f"unknown arch {arch!r}; choose one of {', '.join(ARCHS)} (or an experimental "
                           "one: normlab.experimental.archs)")
    return arch


def build_model(arch: str = "s8", norm: str = "bn") -> nn.Module:
    """Build ``arch`` with ``norm`` layers (any registered norm, or a ``package.module:factory`` spec; see
    normlab.norms). The module maps float images in [0, 1], (N, 3, 32, 32), to logits (N, 10); input
    normalization is inside it."""
    arch = RENAMED.get(arch, arch)
    builder = all_archs()[check_arch(arch)]
    if arch in ARCH_NORMS:  # built for one norm only
        check_norm(norm, tuple(ARCH_NORMS[arch]), arch=arch)
        norm = ARCH_NORMS[arch][norm]
    return builder(get_norm_layer(norm))


def count_params(model: nn.Module) -> int:
    """Every parameter, trainable or frozen: the budgeted figure."""
    return sum(p.numel() for p in model.parameters())
