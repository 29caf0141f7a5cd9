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


def held_out(results: dict) -> str:
    """The split a finished run is judged on: "val" for a run that held out a validation split (such a
    run is for choosing settings and never evaluates the test set), "test" for a run on all the training
    images. Its headline accuracy is ``results[f"{held_out(results)}_acc"]``."""
    return "val" if results.get("val_size") else "test"


def headline(results: dict) -> str:
    """A finished run's headline figure as text: e.g. "test 87.98%", or "val 88.18%"."""
    held = held_out(results)
    return f"{held} {results[f'{held}_acc']:.2f}%"


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    import statistics

    if len(values) == 1:
        return values[0], 0.0
    return statistics.mean(values), statistics.stdev(values)
