"""The norm zoo: known normalizations beyond BN, GN and LN, each as a layer for (N, C, H, W) feature maps.

:mod:`normlab.norms` registers each under a short name. Every layer here normalizes in float32 and hands
back the input's dtype (bf16 runs stay bf16), and keeps its parameter count small enough for the budget:
one to three values per channel. A norm may also name the conv class that should precede it
(``factory.conv``): weight standardization belongs to the conv, not the norm.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _channel(t: torch.Tensor) -> torch.Tensor:
    return t.view(1, -1, 1, 1)


class LayerNorm2d(nn.LayerNorm):
    """ConvNeXt's LayerNorm (Liu et al., "A ConvNet for the 2020s", 2022): at every position, over the C
    channels of that position only, with a scale and shift per channel. Independent of the batch and of
    the other positions."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__(channels, eps=eps)

    def forward(self, x):
        return F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias,
                            self.eps).permute(0, 3, 1, 2)


class RMSNorm2d(nn.Module):
    """RMS normalization (Zhang & Sennrich, "Root Mean Square Layer Normalization", 2019) for conv nets:
    per sample, over (C, H, W) as ``ln`` does, but divided by the root mean square without subtracting the
    mean; a scale per channel and no shift (RMSNorm has none)."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))

    def forward(self, x):
        ms = torch.mean(x.square(), (1, 2, 3), keepdim=True, dtype=torch.float32)
        return x * (torch.rsqrt(ms + self.eps) * _channel(self.weight)).to(x.dtype)


class BatchRenorm2d(nn.BatchNorm2d):
    """Batch Renormalization (Ioffe, "Batch Renormalization", 2017): in training, BN's batch statistics
    corrected towards the running ones by ``r = clip(sigma_B / sigma, 1/r_max, r_max)`` and ``d = clip((mu_B -
    mu) / sigma, -d_max, d_max)`` (no gradient through r and d), so training and inference compute nearly
    the same function even for small batches. In eval mode it is BN with running statistics. As in the
    paper, the correction opens up gradually: r_max from 1 to 3 and d_max from 0 to 5 over the first
    ``warmup_steps`` batches, while the running statistics settle. Same parameters and buffers as BN."""

    r_max, d_max, warmup_steps = 3.0, 5.0, 2000

    def forward(self, x):
        if not self.training:
            return super().forward(x)
        mean = torch.mean(x, (0, 2, 3), dtype=torch.float32)
        var = (torch.mean(x.square(), (0, 2, 3), dtype=torch.float32) - mean.square()).clamp_min(0)
        std = torch.sqrt(var + self.eps)
        running_std = torch.sqrt(self.running_var + self.eps)
        # The ramp as a tensor, not a Python number: torch.compile then keeps one graph for every step
        # (a float would be a new constant, and a recompile, at each step).
        ramp = (self.num_batches_tracked / self.warmup_steps).clamp(max=1.0)
        r_max, d_max = 1.0 + (self.r_max - 1.0) * ramp, self.d_max * ramp
        r = torch.minimum(torch.maximum(std.detach() / running_std, 1.0 / r_max), r_max)
        d = torch.minimum(torch.maximum((mean.detach() - self.running_mean) / running_std, -d_max), d_max)
        with torch.no_grad():
            n = x.numel() / x.shape[1]
            self.running_mean.lerp_(mean.detach(), self.momentum)
            self.running_var.lerp_(var.detach() * n / max(n - 1, 1), self.momentum)
            self.num_batches_tracked += 1
        # ((x - mean) / std * r + d) * weight + bias, as one scale and shift per channel
        scale = r / std * self.weight
        shift = self.bias + self.weight * (d - mean * r / std)
        return torch.addcmul(_channel(shift).to(x.dtype), x, _channel(scale).to(x.dtype))


class FilterResponseNorm2d(nn.Module):
    """Filter Response Normalization with its Thresholded Linear Unit (Singh & Krishnan, 2020): per sample
    and channel, divided by the root mean square over (H, W) (no mean subtraction, no batch), then a scale
    and shift per channel and ``max(y, tau)`` with a learned threshold per channel: three values per
    channel. The architectures' ReLU still follows it."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.tau = nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        nu2 = torch.mean(x.square(), (2, 3), keepdim=True, dtype=torch.float32)
        scale = torch.rsqrt(nu2 + self.eps) * _channel(self.weight)
        y = torch.addcmul(_channel(self.bias).to(x.dtype), x, scale.to(x.dtype))
        return torch.maximum(y, _channel(self.tau).to(x.dtype))


class EvoNormS0(nn.Module):
    """EvoNorm-S0 (Liu et al., "Evolving Normalization-Activation Layers", 2020): ``x * sigmoid(v * x) /
    group_std(x) * gamma + beta``, the group standard deviation per sample over (C/G, H, W) as in
    GroupNorm; a batch-independent norm and activation in one, three values per channel."""

    def __init__(self, channels: int, groups: int, eps: float = 1e-5):
        super().__init__()
        self.groups, self.eps = groups, eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.v = nn.Parameter(torch.ones(channels))

    def forward(self, x):
        n, c = x.shape[:2]
        grouped = x.reshape(n, self.groups, -1)
        mean = torch.mean(grouped, -1, dtype=torch.float32)
        var = (torch.mean(grouped.square(), -1, dtype=torch.float32) - mean.square()).clamp_min(0)
        scale = (torch.rsqrt(var + self.eps).repeat_interleave(c // self.groups, 1).view(n, c, 1, 1)
                 * _channel(self.weight))
        gated = x * torch.sigmoid(_channel(self.v).to(x.dtype) * x)
        return torch.addcmul(_channel(self.bias).to(x.dtype), gated, scale.to(x.dtype))


class Bias2d(nn.Module):
    """No normalization: a learned shift per channel only (the convs have no bias of their own, a norm's
    shift stands in for it). Trains because the conv before it is He-initialized (:class:`HeConv2d`)."""

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        return x + _channel(self.bias).to(x.dtype)


class HeConv2d(nn.Conv2d):
    """A conv initialized for ReLU nets without norms (He et al., 2015: normal, std sqrt(2 / fan_in)), so
    the signal keeps its scale through the depth; PyTorch's default init shrinks it by about sqrt(6) per
    conv + ReLU, which a norm would undo. Same parameters and state dict as nn.Conv2d."""

    def reset_parameters(self):
        nn.init.kaiming_normal_(self.weight, nonlinearity="relu")
        if self.bias is not None:
            nn.init.zeros_(self.bias)


class WSConv2d(nn.Conv2d):
    """A conv whose kernel is standardized per output channel (zero mean, unit variance over in-channels
    x kernel) at every forward pass. Same parameters and state dict as nn.Conv2d; no gain, no extra
    parameters. Gradients flow through the standardization."""

    eps = 1e-5

    def standardized_weight(self) -> torch.Tensor:
        w = self.weight
        var, mean = torch.var_mean(w, dim=(1, 2, 3), keepdim=True, unbiased=False)
        return (w - mean) * torch.rsqrt(var + self.eps)

    def forward(self, x):
        return F.conv2d(x, self.standardized_weight(), self.bias, self.stride, self.padding, self.dilation,
                        self.groups)
