"""Classification metrics on label tensors."""
from __future__ import annotations

import torch


def confusion_matrix(true: torch.Tensor, pred: torch.Tensor, num_classes: int = 10) -> torch.Tensor:
    """counts[i, j] = images of class i predicted as j."""
    idx = true.long().cpu() * num_classes + pred.long().cpu()
    return torch.bincount(idx, minlength=num_classes ** 2).view(num_classes, num_classes)


def per_class_accuracy(cm: torch.Tensor) -> list[float]:
    """Percent correct per true class."""
    totals = cm.sum(1).clamp(min=1)
    return [round(100.0 * float(c), 2) for c in cm.diag() / totals]


def accuracy(cm: torch.Tensor) -> float:
    return 100.0 * float(cm.diag().sum()) / max(1, int(cm.sum()))
