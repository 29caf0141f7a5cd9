"""Pieces shared by every architecture."""
from __future__ import annotations

import torch
from torch import nn

from ..data import CIFAR_MEAN, CIFAR_STD
from ..layout import channels_last_grad
from ..zoo import WSConv2d  # noqa: F401  (architectures import it from here)


class Normalize(nn.Module):
    """Maps images in [0, 1] to the reference's standardized inputs. Buffers, not parameters."""

    def __init__(self, mean=CIFAR_MEAN, std=CIFAR_STD):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

    def forward(self, x):
        return (x - self.mean) / self.std


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
