"""Pieces shared by every architecture."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..data import CIFAR_MEAN, CIFAR_STD
from ..layout import channels_last_grad


class Normalize(nn.Module):
    """Maps images in [0, 1] to the reference's standardized inputs. Buffers, not parameters."""

    def __init__(self, mean=CIFAR_MEAN, std=CIFAR_STD):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

    def forward(self, x):
        return (x - self.mean) / self.std


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


class GlobalAvgPool(nn.AdaptiveAvgPool2d):
    """Global average pooling to (N, C, 1, 1) whose input gradient goes back channels_last. The pool's
    own backward returns NCHW; on a channels_last net every layer before it would then run its backward
    on mixed layouts, slowly on the CPU (normlab.layout). ``mean=True`` pools with ``x.mean((2, 3))``,
    the same function with another summation order, as ``convmixer`` was trained. No parameters; the
    state dict is unchanged."""

    def __init__(self, mean: bool = False):
        super().__init__(1)
        self.use_mean = mean

    def forward(self, x):
        x = channels_last_grad(x)
        return x.mean((2, 3), keepdim=True) if self.use_mean else super().forward(x)
