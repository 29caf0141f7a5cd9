"""A layer table: output shape, parameters and receptive field of every layer."""
from __future__ import annotations

import torch
from torch import nn

from .models import count_params

_LEAVES = (nn.Conv2d, nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm, nn.ReLU, nn.Dropout2d, nn.MaxPool2d,
           nn.AdaptiveAvgPool2d, nn.Flatten, nn.Linear)


def layer_table(model: nn.Module) -> list[dict]:
    """One row per leaf layer, in forward order, with the receptive field (in input pixels) of one unit of
    its output. Receptive field r and jump j: a k x k window with stride s gives r += (k - 1) * j, j *= s."""
    rows: list[dict] = []
    hooks = []

    def hook(module, inputs, output, name):
        rows.append({"layer": name, "type": type(module).__name__, "output": tuple(output.shape[1:]),
                     "params": sum(p.numel() for p in module.parameters(recurse=False)), "module": module})

    for name, module in model.named_modules():
        if isinstance(module, _LEAVES):
            hooks.append(module.register_forward_hook(lambda m, i, o, n=name: hook(m, i, o, n)))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, 32, 32))
    model.train(was_training)
    for h in hooks:
        h.remove()
    rf, jump = 1, 1
    for row in rows:
        m = row.pop("module")
        if isinstance(m, (nn.Conv2d, nn.MaxPool2d)) and not isinstance(rf, str):
            k = m.kernel_size if isinstance(m.kernel_size, int) else m.kernel_size[0]
            s = m.stride if isinstance(m.stride, int) else m.stride[0]
            rf += (k - 1) * jump
            jump *= s
        elif isinstance(m, nn.AdaptiveAvgPool2d):
            rf = "global"
        row["receptive_field"] = rf if isinstance(rf, str) else f"{rf}x{rf}"
    return rows


def format_table(model: nn.Module, title: str) -> str:
    rows = layer_table(model)
    head = f"{'layer':<22}{'type':<20}{'output':<16}{'params':>9}  receptive field"
    lines = [title, head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['layer']:<22}{r['type']:<20}{str(r['output']):<16}{r['params']:>9,}  {r['receptive_field']}")
    lines += ["-" * len(head), f"total parameters: {count_params(model):,} (buffers such as BN running "
              f"statistics and the input mean/std are not parameters)",
              f"multiply-adds per 32x32 image (forward, convs and linears): {forward_macs(model) / 1e6:.2f} M"]
    return "\n".join(lines)


def forward_macs(model: nn.Module, size: int = 32) -> int:
    """Multiply-adds of one forward pass of one ``size`` x ``size`` image (convs and linears; norms and
    pools are cheap)."""
    macs = 0

    def hook(m, i, o):
        nonlocal macs
        if isinstance(m, nn.Conv2d):
            macs += o.numel() * m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
        elif isinstance(m, nn.Linear):
            macs += o.numel() * m.in_features

    hooks = [m.register_forward_hook(hook) for m in model.modules()]
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    for h in hooks:
        h.remove()
    return macs
