"""Patch-whitening initialization of a model's first conv (``--set stem_init=whiten``).

The first conv of a small net spends its early epochs learning what the covariance of image patches
already says: which colour-and-space directions carry the variance. Whitening initializes it from that
covariance instead (as Keller Jordan's airbench does for its 2x2 first layer): filter ``i`` is the i-th
principal direction of the training set's (normalized) k x k patches, scaled by 1 / sqrt(its variance),
so each filter's response has unit variance and the responses are uncorrelated. A ReLU follows the conv
in every net here, so each direction is used twice, as +v and -v, and both halves of it pass. With
``out`` channels the ``out // 2`` directions of most variance are used; the rest of a k x k x 3 patch's
directions (the finest, noisiest detail) are left out, and any channels left over keep their default
initialization. The weights stay trainable and are counted in the budget like any other.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .errors import NormlabError
from .models.common import Normalize

WHITEN_IMAGES = 1000  # patches from this many training images: 900 K 3x3 patches, plenty for a 27x27 covariance
WHITEN_EPS = 5e-4     # added to each variance: keeps the filters of near-zero-variance directions bounded


def first_conv(model: nn.Module) -> nn.Conv2d:
    """The model's first conv on the (3-channel) image."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and m.in_channels == 3 and m.groups == 1:
            return m
    raise NormlabError("stem_init=whiten: this architecture has no conv on the 3-channel image; "
                       "drop --set stem_init=whiten")


@torch.no_grad()
def whiten_stem(model: nn.Module, images: torch.Tensor, *, samples: int = WHITEN_IMAGES,
                eps: float = WHITEN_EPS) -> nn.Conv2d:
    """Initialize ``model``'s first conv from the patch covariance of ``images`` (uint8, N x 3 x 32 x 32,
    training images only); return that conv."""
    conv = first_conv(model)
    kh, kw = conv.kernel_size
    x = images[:samples].cpu().float().div(255)
    normalize = next((m for m in model.modules() if isinstance(m, Normalize)), None)
    if normalize is not None:  # the conv sees normalized images
        x = (x - normalize.mean.cpu()) / normalize.std.cpu()
    patches = F.unfold(x, (kh, kw)).transpose(1, 2).reshape(-1, 3 * kh * kw).double()
    variances, directions = torch.linalg.eigh(torch.cov(patches.T))  # ascending variance
    used = min(conv.out_channels // 2, directions.shape[1])
    filters = (directions[:, -used:].flip(1) / (variances[-used:].flip(0) + eps).sqrt()).T  # most variance first
    weight = torch.cat([filters, -filters]).reshape(2 * used, 3, kh, kw)
    conv.weight[: 2 * used] = weight.to(conv.weight.dtype)
    return conv
