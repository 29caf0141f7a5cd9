"""One factory from a short name to a normalization layer (in the spirit of timm's create_norm_layer).

Every architecture asks this module for its norm layers, so "the same model with another norm" is a
one-word change and the parameter budget is the same for every norm:

- ``bn``: BatchNorm2d. Statistics over (N, H, W) per channel; needs the batch; running stats at eval.
- ``gn``: GroupNorm. Statistics per sample over (C/G, H, W); ``groups`` is chosen by the architecture.
- ``ln``: Layer Norm for conv nets as budget-friendly as BN: per sample over (C, H, W), with one scale
  and shift per channel (GroupNorm with one group). Same parameter count as BN and GN.
- ``ln-elementwise``: ``nn.LayerNorm([C, H, W])``, a scale and shift for every element, as the
  reference study used; it needs the spatial size and costs 2*C*H*W parameters.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .errors import NormlabError
from .layout import channels_last_grad


class GroupNorm(nn.GroupNorm):
    """nn.GroupNorm with a faster path for bfloat16 channels_last input on the CPU.

    PyTorch 2.13's CPU kernel for GroupNorm with more than one group is slow on bfloat16 channels_last
    tensors (one norm of convmixer's 128x64x16x16, forward and backward: 24.7 ms against 9.6 ms on a
    contiguous NCHW copy), so the norm runs on such a copy. Its input gradient is NCHW too; it is turned
    back to channels_last before it leaves, because the layer before (ReLU's backward) is slow on mixed
    layouts in bfloat16 (47% of a convmixer-s16-GN training step went there). With that turn,
    `benchmarks/arch_throughput.py --batch 128 --precision bf16` trains convmixer-GN at 569 images/s
    instead of 381 (float32: 644, so GN still trains in float32 here). Same parameters and state dict as
    nn.GroupNorm; same function.
    """

    def forward(self, x):
        if (self.num_groups > 1 and x.dtype == torch.bfloat16 and x.device.type == "cpu"
                and x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)):
            x = channels_last_grad(x)
            return super().forward(x.contiguous()).contiguous(memory_format=torch.channels_last)
        return super().forward(x)


def _batch(channels: int, groups: int | None, spatial: int | None) -> nn.Module:
    return nn.BatchNorm2d(channels)


def _group(channels: int, groups: int | None, spatial: int | None) -> nn.Module:
    groups = groups or max(1, channels // 8)  # default: 8 channels per group
    if channels % groups:
        raise NormlabError(f"GroupNorm: {channels} channels do not split into {groups} groups")
    return GroupNorm(groups, channels)


def _layer(channels: int, groups: int | None, spatial: int | None) -> nn.Module:
    return nn.GroupNorm(1, channels)


def _layer_elementwise(channels: int, groups: int | None, spatial: int | None) -> nn.Module:
    if spatial is None:
        raise NormlabError("ln-elementwise needs the feature map size (spatial=...)")
    return nn.LayerNorm([channels, spatial, spatial])


NORMS: dict[str, Callable[[int, int | None, int | None], nn.Module]] = {
    "bn": _batch,
    "gn": _group,
    "ln": _layer,
    "ln-elementwise": _layer_elementwise,
}

#: The norms users pick between on the command line (ln-elementwise is the reference's variant,
#: reached through its own architecture).
USER_NORMS = ("bn", "gn", "ln")


def create_norm(name: str, channels: int, *, groups: int | None = None, spatial: int | None = None) -> nn.Module:
    """Build the norm layer ``name`` for a feature map of ``channels`` channels."""
    try:
        factory = NORMS[name]
    except KeyError:
        raise NormlabError(f"unknown norm {name!r}; choose one of {', '.join(USER_NORMS)}") from None
    return factory(channels, groups, spatial)
