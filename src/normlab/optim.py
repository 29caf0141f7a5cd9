"""Optimizers: the one factory a run gets its optimizer from (:func:`make_optimizer`), Muon for the convs
next to SGD for everything else, and the weight average (:class:`WeightAverage`).

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

from .errors import NormlabError
from .recipes import Recipe


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


def make_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    """The optimizer ``recipe`` names, over every parameter of ``model``."""
    matrices = muon_weights(model, recipe.muon_scope) if recipe.optimizer == "muon" else []  # Muon's share
    if recipe.optimizer == "muon" and not matrices:
        raise NormlabError("optimizer=muon with muon_scope=pointwise needs 1x1 convs to optimize (the "
                           "convmixer architectures have them); set muon_scope=convs or pick another optimizer")
    taken = {id(p) for p in matrices}
    params: list = [p for p in model.parameters() if id(p) not in taken]
    if not recipe.decay_norms:  # weight decay on conv and linear weights only, not on 1-d parameters
        params = [{"params": [p for p in params if p.ndim > 1]},
                  {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    if recipe.optimizer == "muon":
        return MuonSGD(matrices, params, lr=recipe.lr, muon_lr=recipe.muon_lr, momentum=recipe.momentum,
                       nesterov=recipe.nesterov, weight_decay=recipe.weight_decay,
                       muon_weight_decay=recipe.muon_weight_decay, muon_momentum=recipe.muon_momentum)
    return torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum,
                           nesterov=recipe.nesterov, weight_decay=recipe.weight_decay)


class WeightAverage:
    """An exponential moving average of ``model``'s weights and buffers (``Recipe.ema_epochs``), updated
    after every optimizer step. The first updates average over fewer steps ((1 + n) / (10 + n)), so the
    average is not anchored to the random initial weights."""

    def __init__(self, model: nn.Module, ema_epochs: float, steps_per_epoch: int):
        from torch.optim.swa_utils import AveragedModel

        decay = 1.0 - 1.0 / max(1.0, ema_epochs * steps_per_epoch)

        def update(averaged: list, current: list, n_averaged: torch.Tensor) -> None:
            if not averaged[0].is_floating_point():  # BatchNorm's step counters
                torch._foreach_copy_(averaged, current)
                return
            n = float(n_averaged)
            torch._foreach_lerp_(averaged, current, 1.0 - min(decay, (1.0 + n) / (10.0 + n)))

        self.source = model
        self.averaged = AveragedModel(model, multi_avg_fn=update, use_buffers=True)

    @property
    def model(self) -> nn.Module:
        return self.averaged.module

    def update(self) -> None:
        self.averaged.update_parameters(self.source)
