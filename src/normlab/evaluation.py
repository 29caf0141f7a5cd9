"""Evaluation and prediction of a model on uint8 images."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .devices import autocast, to_input

# Evaluation batches: large ones are cheaper per image on accelerators, but not on the CPU, where 128 is
# the faster size (convmixer-BN, float32, 4,000 images, one thread: 1.44 s against 2.08 s at 1000).
EVAL_BATCH = 1000
EVAL_BATCH_CPU = 128


def eval_batch(device: torch.device) -> int:
    return EVAL_BATCH_CPU if device.type == "cpu" else EVAL_BATCH


def predict_logits(model: torch.nn.Module, x: torch.Tensor, device: torch.device, precision: str = "fp32",
                   batch_size: int | None = None, flip_tta: bool = False) -> torch.Tensor:
    """Logits (float32, on CPU) for uint8 images ``x``. ``flip_tta``: the mean of the logits of each image
    and its mirror image (test-time augmentation; reported apart from single-view accuracy)."""
    plain, mirrored = _view_logits(model, x, device, precision, batch_size, mirror=flip_tta)
    return plain if mirrored is None else (plain + mirrored) / 2


@torch.inference_mode()
def _view_logits(model, x, device, precision, batch_size: int | None, mirror: bool):
    """Float32 CPU logits of the images as they are and, with ``mirror``, of their mirror images (else None)."""
    batch_size = batch_size or eval_batch(device)
    was_training = model.training
    model.eval()
    plain, mirrored = [], []
    for i in range(0, len(x), batch_size):
        xb = to_input(x[i:i + batch_size].to(device))
        with autocast(device, precision):
            plain.append(model(xb).float().cpu())
            if mirror:
                mirrored.append(model(xb.flip(3)).float().cpu())
    model.train(was_training)
    if not plain:  # no images
        return torch.zeros(0, 10), torch.zeros(0, 10) if mirror else None
    return torch.cat(plain), torch.cat(mirrored) if mirror else None


def evaluate(model, x, y, device, precision: str = "fp32", flip_tta: bool = False) -> dict:
    """Loss, accuracy, predictions and logits of single views; with ``flip_tta`` also ``acc_flip_tta``,
    the accuracy of each image's and its mirror's mean logits, from the same pass over the images."""
    logits, mirrored = _view_logits(model, x, device, precision, None, mirror=flip_tta)
    y = y.cpu()
    pred = logits.argmax(1)

    def percent_right(p: torch.Tensor) -> float:
        return 100.0 * float((p == y).float().mean())

    out = {"loss": float(F.cross_entropy(logits, y)), "acc": percent_right(pred), "pred": pred, "logits": logits}
    if mirrored is not None:
        out["acc_flip_tta"] = percent_right(((logits + mirrored) / 2).argmax(1))
    return out
