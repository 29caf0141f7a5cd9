"""One registry from a short name to a normalization-layer factory (in the spirit of timm's
``create_norm_layer``).

Architectures never see a norm *name*: they take a factory, ``norm_layer(channels, groups=None,
spatial=None) -> nn.Module``, and call it once per norm they place. So "the same model with another norm"
is one word at the entry point, and the parameter budget is the same for every norm:

- ``bn``: BatchNorm2d. Statistics over (N, H, W) per channel; needs the batch; running stats at eval.
- ``gn``: GroupNorm. Statistics per sample over (C/G, H, W). ``groups`` is the architecture's choice where it
  has one (S8 keeps the reference's), else :func:`default_groups`.
- ``ln``: Layer Norm for conv nets as budget-friendly as BN: per sample over (C, H, W), with one scale
  and shift per channel (GroupNorm with one group). Same parameter count as BN and GN.
- ``ln-elementwise``: ``nn.LayerNorm([C, H, W])``, a scale and shift for every element, as the
  reference study used; it needs the spatial size and costs 2*C*H*W parameters. Only the reference's own
  LN architecture uses it.

:func:`check_norm` is the one place a norm name is validated, with one message.
"""
from __future__ import annotations

from typing import Callable, Protocol

import torch
from torch import nn

from .errors import NormlabError
from .layout import channels_last_grad
from .names import USER_NORMS


class NormLayer(Protocol):
    def __call__(self, channels: int, groups: int | None = None, spatial: int | None = None) -> nn.Module: ...


#: GroupNorm's default group size: 8 channels per group, the usual choice for widths this small.
GN_CHANNELS_PER_GROUP = 8


def default_groups(channels: int) -> int:
    """GroupNorm groups for ``channels`` where the architecture names none: about GN_CHANNELS_PER_GROUP
    channels each, and a divisor of ``channels`` (the largest not above ``channels // 8``; 6 groups of 10
    at 60 channels)."""
    target = max(1, channels // GN_CHANNELS_PER_GROUP)
    return next(g for g in range(target, 0, -1) if channels % g == 0)


class GroupNorm(nn.GroupNorm):
    """nn.GroupNorm with a faster path for bfloat16 channels_last input on the CPU.

    PyTorch's CPU kernel for GroupNorm with more than one group is slow on bfloat16 channels_last tensors
    (one norm of convmixer's 128x64x16x16, forward and backward: 24.7 ms against 9.6 ms on a contiguous
    NCHW copy), so the norm runs on such a copy. Its input gradient is NCHW too; it is turned back to
    channels_last before it leaves, because the layer before (ReLU's backward) is slow on mixed layouts in
    bfloat16. Same parameters, state dict and function as nn.GroupNorm (docs/benchmarks.md).
    """

    def forward(self, x):
        if (self.num_groups > 1 and x.dtype == torch.bfloat16 and x.device.type == "cpu"
                and x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)):
            x = channels_last_grad(x)
            return super().forward(x.contiguous()).contiguous(memory_format=torch.channels_last)
        return super().forward(x)


def batch_norm(channels: int, groups: int | None = None, spatial: int | None = None) -> nn.Module:
    return nn.BatchNorm2d(channels)


def group_norm(channels: int, groups: int | None = None, spatial: int | None = None) -> nn.Module:
    groups = groups or default_groups(channels)
    if channels % groups:
        raise NormlabError(f"GroupNorm: {channels} channels do not split into {groups} groups; pick a "
                           "group count that divides the channel count")
    return GroupNorm(groups, channels)


def layer_norm(channels: int, groups: int | None = None, spatial: int | None = None) -> nn.Module:
    return nn.GroupNorm(1, channels)


def layer_norm_elementwise(channels: int, groups: int | None = None, spatial: int | None = None) -> nn.Module:
    if spatial is None:
        raise NormlabError("ln-elementwise needs the feature map size (spatial=...)")
    return nn.LayerNorm([channels, spatial, spatial])


NORMS: dict[str, Callable[..., nn.Module]] = {
    "bn": batch_norm,
    "gn": group_norm,
    "ln": layer_norm,
    "ln-elementwise": layer_norm_elementwise,
}

#: The norms users pick between are names.USER_NORMS (ln-elementwise is the reference's variant, reached
#: through its own architecture, s8-reference-ln).


def check_norm(name: str, allowed: tuple[str, ...] = USER_NORMS, *, arch: str | None = None,
               where: str = "") -> str:
    """``name`` if it is one of ``allowed``; else the one error every entry point gives (``arch``: the
    architecture that takes only ``allowed``; ``where``: e.g. " for --pretrained")."""
    if name not in allowed:
        what = f"arch {arch!r} does not take norm {name!r}" if arch else f"unknown norm {name!r}{where}"
        raise NormlabError(f"{what}; choose one of {', '.join(allowed)}")
    return name


def get_norm_layer(name: str) -> Callable[..., nn.Module]:
    """The factory registered as ``name``."""
    check_norm(name, tuple(NORMS))
    return NORMS[name]
