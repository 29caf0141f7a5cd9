"""Pieces shared by every architecture."""
from __future__ import annotations

import torch
from torch import nn

# CIFAR-10 training-set channel statistics, as the reference used them.
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2471, 0.2435, 0.2616)


class Normalize(nn.Module):
    """Maps images in [0, 1] to the reference's standardized inputs. Buffers, not parameters."""

    def __init__(self, mean=CIFAR_MEAN, std=CIFAR_STD):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

    def forward(self, x):
        return (x - self.mean) / self.std
