"""GroupNorm written for torch.compile on the CPU (used by gn, ln and in when a model is compiled).

Inductor lowers PyTorch's own group norm on channels_last tensors into loops that index a per-group
statistic with ``channel // channels_per_group``. That division stops the C++ code from vectorizing, so
compiled S8-GN trained no faster than eager and compiled S8-LN slower (docs/benchmarks.md, "GroupNorm
on the CPU"). Here every statistic the big elementwise passes read is kept *per channel*, an (N, C)
tensor in channel order, and the backward pass is written out by hand in the same form:

- forward: per-channel mean and variance over (H, W); each channel's group mean and variance from them
  (law of total variance, exact); then ``y = x * scale + shift`` with per-channel ``scale`` and ``shift``.
- backward: per-channel sums of ``dy`` and ``dy * x``; their group means; then
  ``dx = dy * c1 + x * c2 + c3`` with per-channel ``c1``, ``c2``, ``c3``. ``dy`` is used in its own dtype
  and converted to float32 inside each expression: converting it once up front made Inductor store a
  float32 copy of the whole gradient, which cost S8-GN's 32x32 norm backward 7.8 ms a step instead of 3.6.

The group means of an (N, C) tensor are computed as a reduction whose output is again per channel (a
group's k values broadcast to k x k and averaged along the last axis), which Inductor stores as a
buffer rather than recomputing it inside the elementwise loops -- provided it does not unroll
reductions this small, which ``normlab.engine.COMPILE_OPTIONS`` turns off.

Same function as ``nn.GroupNorm`` (the tests compare values and gradients in float64); the output keeps
the input's dtype, so under bf16 autocast it is bf16 where nn.GroupNorm returns float32.
"""
from __future__ import annotations

import torch


def _group_mean(t: torch.Tensor, groups: int) -> torch.Tensor:
    """(N, C) -> (N, C): each channel's mean over the channels of its group."""
    n, c = t.shape
    k = c // groups
    if k == 1:
        return t
    if groups == 1:
        return t.mean(1, keepdim=True).expand(n, c)
    return t.view(n, groups, 1, k).expand(n, groups, k, k).mean(-1).reshape(n, c)


def _per_channel(t: torch.Tensor) -> torch.Tensor:
    return t[:, :, None, None]


class _GroupNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, groups: int, eps: float):
        xf = x.float()
        var_c, mean_c = torch.var_mean(xf, dim=(2, 3), correction=0)
        mean_g = _group_mean(mean_c, groups)
        var_g = _group_mean(var_c + (mean_c - mean_g) ** 2, groups)
        rstd = torch.rsqrt(var_g + eps)
        scale = rstd * weight
        shift = bias - mean_g * scale
        ctx.save_for_backward(x, weight, mean_g, rstd)
        ctx.groups = groups
        return (xf * _per_channel(scale) + _per_channel(shift)).to(x.dtype)

    @staticmethod
    def backward(ctx, dy):
        x, weight, mean_g, rstd = ctx.saved_tensors
        xf = x.float()
        hw = x.shape[2] * x.shape[3]
        sum_dy = dy.sum((2, 3), dtype=torch.float32)
        sum_dy_xhat = ((dy.float() * xf).sum((2, 3)) - mean_g * sum_dy) * rstd  # sum of dy * normalized x
        a = _group_mean(sum_dy * weight, ctx.groups) / hw  # group mean of dL/d(normalized x)
        b = _group_mean(sum_dy_xhat * weight, ctx.groups) / hw  # ... of it times the normalized x
        c1 = rstd * weight
        c2 = -rstd * rstd * b
        c3 = rstd * (mean_g * rstd * b - a)
        dx = dy.float() * _per_channel(c1) + xf * _per_channel(c2) + _per_channel(c3)
        return dx.to(x.dtype), sum_dy_xhat.sum(0), sum_dy.sum(0), None, None


def group_norm(x: torch.Tensor, groups: int, weight: torch.Tensor, bias: torch.Tensor,
               eps: float = 1e-5) -> torch.Tensor:
    """GroupNorm of a 4-d (N, C, H, W) tensor with a per-channel scale and shift (see the module doc)."""
    return _GroupNorm.apply(x, weight, bias, groups, eps)
