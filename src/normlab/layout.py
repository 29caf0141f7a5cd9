"""Memory layout of gradients on the CPU.

normlab trains channels_last (NHWC), where PyTorch 2.13's CPU kernels for convolutions and norms are
fastest. Some backward passes hand their gradient on in the default NCHW layout instead: global average
pooling (a mean or an adaptive pool: its gradient is the output's, spread over H x W) and GroupNorm's
contiguous-copy path (see :class:`normlab.norms.GroupNorm`). Every layer before such a point then runs
its backward on mixed layouts, which those kernels handle slowly: with the gradient of convmixer-s16-res-BN's
global pool in NCHW, a BatchNorm backward took 37 ms per call where it takes 5 ms on matching layouts
(docs/benchmarks.md, "Memory layout").
"""
from __future__ import annotations

import torch


class _ChannelsLastGrad(torch.autograd.Function):
    """Identity forward; the backward hands its gradient on in channels_last."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad.contiguous(memory_format=torch.channels_last)


def channels_last_grad(x: torch.Tensor) -> torch.Tensor:
    """``x`` itself in the forward pass; its gradient leaves in channels_last. A no-op for tensors that
    need no gradient or are not 4-d channels_last."""
    if x.requires_grad and x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
        return _ChannelsLastGrad.apply(x)
    return x
