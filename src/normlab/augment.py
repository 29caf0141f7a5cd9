"""Batched tensor augmentations on uint8 image batches (N, 3, H, W): no per-sample Python.

Each takes a ``torch.Generator`` so that a seed fixes every random choice.
"""
from __future__ import annotations

import torch

from .data import CIFAR_MEAN


def flip(x: torch.Tensor, gen: torch.Generator, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mirror a random half of the images left-right (or, given a boolean ``mask``, the images it marks)."""
    if mask is None:
        mask = torch.rand(x.shape[0], generator=gen, device=x.device) < 0.5
    return torch.where(mask.view(-1, 1, 1, 1), x.flip(3), x)


def _windows(x: torch.Tensor, h: int, w: int, gen: torch.Generator) -> torch.Tensor:
    """An ``h`` x ``w`` window of each image at a random offset, in one gather."""
    n, c, big_h, big_w = x.shape
    dy = torch.randint(0, big_h - h + 1, (n,), generator=gen, device=x.device)
    dx = torch.randint(0, big_w - w + 1, (n,), generator=gen, device=x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    idx_n = torch.arange(n, device=x.device)[:, None, None, None]
    idx_c = torch.arange(c, device=x.device)[None, :, None, None]
    return x[idx_n, idx_c, rows, cols]


def crop(x: torch.Tensor, pad: int, gen: torch.Generator) -> torch.Tensor:
    """Random translation by up to ``pad`` pixels each way: reflect-pad, then take a random HxW window."""
    if pad <= 0:
        return x
    h, w = x.shape[-2:]
    padded = torch.nn.functional.pad(x.float() if x.dtype == torch.uint8 else x, (pad,) * 4,
                                     mode="reflect").to(x.dtype)
    return _windows(padded, h, w, gen)


def cutout(x: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    """Fill one random ``size`` x ``size`` square per image (clipped at the border) with the mean colour."""
    if size <= 0:
        return x
    n, _, h, w = x.shape
    cy = torch.randint(0, h, (n,), generator=gen, device=x.device)
    cx = torch.randint(0, w, (n,), generator=gen, device=x.device)
    ys = torch.arange(h, device=x.device)
    xs = torch.arange(w, device=x.device)
    top, left = cy - size // 2, cx - size // 2
    inside_y = (ys[None] >= top[:, None]) & (ys[None] < top[:, None] + size)
    inside_x = (xs[None] >= left[:, None]) & (xs[None] < left[:, None] + size)
    mask = (inside_y[:, :, None] & inside_x[:, None, :])[:, None]
    scale = 255 if x.dtype == torch.uint8 else 1
    fill = (torch.tensor(CIFAR_MEAN, device=x.device) * scale).round().to(x.dtype).view(1, 3, 1, 1)
    return torch.where(mask, fill, x)


def alternating_flips(n: int, seed: int, epoch: int, device) -> torch.Tensor:
    """Which of the ``n`` training images to mirror in ``epoch`` under alternating flips: a random half,
    fixed by the seed, in even epochs and the other half in odd ones. Every image is then seen both ways in
    every two epochs, where random flips leave a quarter of them unmirrored (or mirrored) in both; on a
    short schedule that repetition is waste."""
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return (torch.rand(n, generator=gen, device=device) < 0.5) ^ bool(epoch % 2)


def window(x: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    """A random ``size`` x ``size`` window of each image, at full scale (progressive resizing by crops)."""
    if x.shape[-2:] == (size, size):
        return x
    return _windows(x, size, size, gen)


def downscale(x: torch.Tensor, size: int) -> torch.Tensor:
    """Float images (N, 3, H, W) scaled to ``size`` x ``size``, antialiased (progressive resizing)."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    small = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True,
                                            align_corners=False)
    return small.contiguous(memory_format=torch.channels_last)


def augment(x: torch.Tensor, gen: torch.Generator, *, do_flip: bool, crop_pad: int, cutout_size: int,
            flip_mask: torch.Tensor | None = None) -> torch.Tensor:
    if crop_pad:
        x = crop(x, crop_pad, gen)
    if do_flip:
        x = flip(x, gen, flip_mask)
    if cutout_size:
        x = cutout(x, cutout_size, gen)
    return x
