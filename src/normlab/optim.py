"""Optimizers beyond one torch.optim class: Muon for the pointwise convs, SGD for everything else.

Muon (Jordan et al., 2024; ``torch.optim.Muon``) replaces each step of a weight matrix by the nearest
semi-orthogonal matrix to its momentum (a few Newton-Schulz iterations), so every direction of the matrix
moves by about the same amount, however unevenly the gradient spreads over them. It is meant for the
hidden weight matrices of a network, not for its input layer, output layer or 1-d parameters. In the
ConvMixer nets those matrices are the pointwise (1x1) convs: 36,864 of `convmixer-s16`'s 49,690
parameters. ``torch.optim.Muon`` takes 2-d tensors only, so each 1x1 conv weight ``(out, in, 1, 1)`` is
handed to it as a 2-d view ``(out, in)`` of the same memory, whose gradient is pointed at the conv's
gradient before every step.

``Recipe.muon_scope = "convs"`` hands Muon every conv weight instead: the pointwise convs, the depthwise
3x3 convs (each a ``(channels, 9)`` matrix: one row per channel's filter) and the full-resolution stem
(``(out, 9 * in)``). Every one of them is followed by a norm, as the pointwise convs are. A weight in
channels_last memory is viewed as ``(out, kh * kw * in)``, the order it is stored in; the columns' order
does not change the orthogonalized step (a permutation of the columns commutes with it).
"""
from __future__ import annotations

import torch
from torch import nn


def pointwise_weights(model: nn.Module) -> list[torch.Tensor]:
    """The weights of every dense 1x1 conv in ``model`` (Muon's share of the parameters)."""
    return [m.weight for m in model.modules()
            if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and m.groups == 1]


def conv_weights(model: nn.Module) -> list[torch.Tensor]:
    """The weights of every conv in ``model``: pointwise, depthwise and the stem (``muon_scope="convs"``)."""
    return [m.weight for m in model.modules() if isinstance(m, nn.Conv2d)]


def muon_weights(model: nn.Module, scope: str) -> list[torch.Tensor]:
    """Muon's share of ``model``'s parameters for ``Recipe.muon_scope``."""
    return conv_weights(model) if scope == "convs" else pointwise_weights(model)


def _stored_last(t: torch.Tensor) -> bool:
    """Whether ``t`` (a 4-d conv weight) is stored channels_last and not also contiguous."""
    return t.ndim == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last)


def as_matrix(t: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """``t`` (a conv weight ``(out, in, kh, kw)`` or its gradient) as 2-d ``(out, in*kh*kw)``, or
    ``(out, kh*kw*in)`` with ``channels_last``: a view of the same memory where the layout allows."""
    if channels_last:
        t = t.permute(0, 2, 3, 1)
    return t.reshape(t.shape[0], -1)


class MuonSGD:
    """``torch.optim.Muon`` on ``matrices`` (conv weights), ``torch.optim.SGD`` on ``sgd_params`` (tensors
    or param groups, as SGD takes them).

    Quacks like one optimizer for the engine: ``param_groups`` (SGD's first, so ``param_groups[0]`` is
    SGD's), ``zero_grad``, ``step``, ``state_dict`` and ``load_state_dict``. Every group carries
    ``peak_lr``, which the learning-rate schedule scales.
    """

    def __init__(self, matrices: list[torch.Tensor], sgd_params: list, *, lr: float, muon_lr: float,
                 momentum: float, nesterov: bool, weight_decay: float, muon_weight_decay: float,
                 muon_momentum: float):
        self._pairs = []  # (weight, its 2-d view, whether the view is channels_last's column order)
        for param in matrices:
            last = _stored_last(param)
            view = as_matrix(param.detach(), last)
            if view.data_ptr() != param.data_ptr() or not view.is_contiguous():
                raise ValueError(f"a Muon weight of shape {tuple(param.shape)} has no 2-d view of its memory")
            self._pairs.append((param, view, last))
        # By default (Recipe.muon_weight_decay 0) no weight decay on the Muon matrices: each is followed by
        # a norm, so its scale does not change the function, and Muon's steps have a fixed size whatever
        # that scale is. Decoupled decay (muon_weight_decay) holds that scale down, so the steps stay large
        # relative to it.
        self.muon = torch.optim.Muon([view for _, view, _ in self._pairs], lr=muon_lr,
                                     weight_decay=muon_weight_decay, momentum=muon_momentum,
                                     nesterov=True)
        self.sgd = torch.optim.SGD(sgd_params, lr=lr, momentum=momentum, nesterov=nesterov,
                                   weight_decay=weight_decay)
        for group in self.sgd.param_groups:
            group["peak_lr"] = group["lr"]
        for group in self.muon.param_groups:
            group["peak_lr"] = muon_lr

    @property
    def param_groups(self) -> list[dict]:
        return self.sgd.param_groups + self.muon.param_groups

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.sgd.zero_grad(set_to_none=set_to_none)
        for param, view, _ in self._pairs:
            if param.grad is not None:
                param.grad = None if set_to_none else param.grad.zero_()
            view.grad = None

    @torch.no_grad()
    def step(self) -> None:
        for param, view, last in self._pairs:
            view.grad = None if param.grad is None else as_matrix(param.grad, last)
        self.muon.step()
        self.sgd.step()

    def state_dict(self) -> dict:
        return {"sgd": self.sgd.state_dict(), "muon": self.muon.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.sgd.load_state_dict(state["sgd"])
        self.muon.load_state_dict(state["muon"])
