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

from . import fused, zoo
from .errors import NormlabError
from .layout import channels_last_grad
from .names import NORMS as NORMS_BUILT_IN, USER_NORMS


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

    Inside a compiled CPU model it runs :func:`normlab.fused.group_norm` instead, which Inductor turns
    into vectorized loops (PyTorch's own group norm compiles into scalar ones there).
    """

    def forward(self, x):
        if (torch.compiler.is_compiling() and not torch.compiler.is_exporting() and self.affine and x.dim() == 4
                and x.device.type == "cpu"):
            return fused.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)
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
    return GroupNorm(1, channels)


def layer_norm_elementwise(channels: int, groups: int | None = None, spatial: int | None = None) -> nn.Module:
    if spatial is None:
        raise NormlabError("ln-elementwise needs the feature map size (spatial=...)")
    return nn.LayerNorm([channels, spatial, spatial])


def instance_norm(channels: int, groups: int | None = None, spatial: int | None = None) -> nn.Module:
    """InstanceNorm with a scale and shift per channel (Ulyanov et al., 2016): per sample and channel over
    (H, W); GroupNorm with one channel per group computes exactly that (with GroupNorm's faster CPU path)."""
    return GroupNorm(channels, channels)


def layer_norm_2d(channels: int, groups: int | None = None, spatial: int | None = None) -> nn.Module:
    return zoo.LayerNorm2d(channels)


def rms_norm(channels: int, groups: int | None = None, spatial: int | None = None) -> nn.Module:
    return zoo.RMSNorm2d(channels)


def group_norm_ws(channels: int, groups: int | None = None, spatial: int | None = None) -> nn.Module:
    return group_norm(channels, groups, spatial)


group_norm_ws.conv = zoo.WSConv2d  # GroupNorm after weight-standardized convs (Qiao et al., 2019)
group_norm_ws.__doc__ = ("GroupNorm after weight-standardized convs (Qiao et al., \"Micro-Batch Training with "
                         "Batch-Channel Normalization and Weight Standardization\", 2019): the convs that a norm "
                         "follows standardize their kernels, which smooths the loss as batch statistics do.")


def batch_renorm(channels: int, groups: int | None = None, spatial: int | None = None) -> nn.Module:
    return zoo.BatchRenorm2d(channels)


def filter_response_norm(channels: int, groups: int | None = None, spatial: int | None = None) -> nn.Module:
    return zoo.FilterResponseNorm2d(channels)


def evonorm_s0(channels: int, groups: int | None = None, spatial: int | None = None) -> nn.Module:
    groups = groups or default_groups(channels)
    if channels % groups:
        raise NormlabError(f"EvoNorm-S0: {channels} channels do not split into {groups} groups")
    return zoo.EvoNormS0(channels, groups)


def no_norm(channels: int, groups: int | None = None, spatial: int | None = None) -> nn.Module:
    return zoo.Bias2d(channels)


no_norm.conv = no_norm.depthwise_conv = zoo.HeConv2d  # with no norm to rescale it, the signal needs a ReLU-aware init


NORMS: dict[str, Callable[..., nn.Module]] = {
    "bn": batch_norm,
    "gn": group_norm,
    "ln": layer_norm,
    "ln-elementwise": layer_norm_elementwise,
    "in": instance_norm,
    "ln2d": layer_norm_2d,
    "rms": rms_norm,
    "gn-ws": group_norm_ws,
    "brn": batch_renorm,
    "frn": filter_response_norm,
    "evonorm-s0": evonorm_s0,
    "none": no_norm,
}
#: The built-in norms a user picks between (ln-elementwise is the reference's variant, reached through its
#: own architecture, s8-reference-ln).
ZOO = NORMS_BUILT_IN
ENTRY_POINTS = "normlab.norms"  # the entry-point group through which an installed package adds norms
_PROBE_CHANNELS = 16


def register_norm(name: str, factory: Callable[..., nn.Module], *, replace: bool = False) -> None:
    """Make ``factory`` available as norm ``name`` to every command and function. ``factory(channels,
    groups=None, spatial=None)`` returns an nn.Module mapping (N, C, H, W) to the same shape; it is tried
    once on a small tensor here, so a broken one fails with a one-line error before anything trains."""
    if not isinstance(name, str) or not name or any(c.isspace() for c in name):
        raise NormlabError(f"a norm name is a word without spaces, got {name!r}")
    if name in NORMS and not replace and NORMS[name] is not factory:
        raise NormlabError(f"norm {name!r} is already registered; pick another name (or replace=True)")
    _probe(name, factory)
    NORMS[name] = factory


def _probe(name: str, factory) -> None:
    if not callable(factory):
        raise NormlabError(f"norm {name!r}: {factory!r} is not callable; give a function or class that takes "
                           "the channel count and returns an nn.Module")
    try:
        layer = factory(_PROBE_CHANNELS, groups=None, spatial=4)
        x = torch.randn(2, _PROBE_CHANNELS, 4, 4)
        y = layer(x) if isinstance(layer, nn.Module) else None
    except NormlabError:
        raise
    except Exception as exc:  # a user's code: whatever it raises becomes one line
        raise NormlabError(f"norm {name!r}: calling it on {_PROBE_CHANNELS} channels failed "
                           f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); its factory "
                           "must accept (channels, groups=None, spatial=None)") from None
    if not isinstance(layer, nn.Module):
        raise NormlabError(f"norm {name!r}: its factory returned {type(layer).__name__}, not an nn.Module")
    if not isinstance(y, torch.Tensor) or y.shape != x.shape:
        raise NormlabError(f"norm {name!r}: maps (2, {_PROBE_CHANNELS}, 4, 4) to "
                           f"{tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__}; a norm must "
                           "keep its input's shape")


def _from_spec(spec: str):
    """The factory named by ``package.module:attribute``."""
    import importlib

    module, _, attr = spec.partition(":")
    try:
        target = importlib.import_module(module)
    except Exception as exc:
        raise NormlabError(f"norm {spec!r}: cannot import {module!r} ({type(exc).__name__}: {exc}); is it on "
                           "PYTHONPATH (or installed)?") from None
    for part in attr.split("."):
        if not hasattr(target, part):
            raise NormlabError(f"norm {spec!r}: {module!r} has no {attr!r}")
        target = getattr(target, part)
    return target


def _from_entry_points(name: str):
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINTS):
        if ep.name == name:
            try:
                return ep.load()
            except Exception as exc:
                raise NormlabError(f"norm {name!r}: its entry point {ep.value!r} does not load ({exc})") from None
    return None



def check_norm(name: str, allowed: tuple[str, ...] = USER_NORMS, *, arch: str | None = None,
               where: str = "") -> str:
    """``name`` if it is one of ``allowed``; else the one error every entry point gives (``arch``: the
    architecture that takes only ``allowed``; ``where``: e.g. " for --pretrained")."""
    if name not in allowed:
        what = f"arch {arch!r} does not take norm {name!r}" if arch else f"unknown norm {name!r}{where}"
        raise NormlabError(f"{what}; choose one of {', '.join(allowed)}")
    return name


def get_norm_layer(name: str) -> Callable[..., nn.Module]:
    """The factory for norm ``name``: a registered name (built in, or added by :func:`register_norm`), a
    ``package.module:factory`` spec, or a name an installed package adds through the ``normlab.norms``
    entry-point group. A spec or entry point is checked and registered on first use."""
    if name in NORMS:
        return NORMS[name]
    factory = _from_spec(name) if ":" in name else _from_entry_points(name)
    if factory is None:
        check_norm(name, ZOO)  # unknown: the one message
    register_norm(name, factory)
    return factory


def is_norm(name: str) -> bool:
    """Whether ``name`` names a norm (a spec is imported to find out)."""
    try:
        get_norm_layer(name)
    except NormlabError:
        return False
    return True
