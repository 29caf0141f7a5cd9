"""Common corruptions of CIFAR-10 test images, after CIFAR-10-C.

Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions and Perturbations"
(ICLR 2019) built CIFAR-10-C by applying 19 corruptions at 5 severities to the test set. This module is
normlab's own implementation of 14 of them with the published CIFAR-10 parameters (the tables below),
written on NumPy, Pillow and matplotlib's HSV conversion, so it needs nothing beyond normlab's
dependencies. It is deterministic: the random draws of each (corruption, severity) come from a NumPy
generator seeded by ``(seed, corruption, severity, block of 500 images)``, so the same images give the
same pixels on any machine and the first N images do not depend on how many follow.

Differences from the published files, on purpose or by necessity: normlab's copy of the test set is in
another order, and the random draws differ, so these are CIFAR-10-C *style* images, not the files from
Zenodo; motion blur follows ImageMagick's one-sided Gaussian line kernel (what the original called through
Wand) in NumPy; glass blur (a per-pixel Python loop), zoom blur, snow, frost (needs photographs) and
spatter (OpenCV's Canny and distance transform) are left out.

Every function takes float64 images (N, H, W, 3) in [0, 1] and returns the same shape; :func:`corrupt`
maps uint8 (N, 3, 32, 32) tensors to uint8 tensors, truncating as the original ``np.uint8`` did.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from .config import MAX_SEED, check_int
from .errors import NormlabError

SEVERITIES = (1, 2, 3, 4, 5)
BLOCK = 500  # images per random generator (see the module docstring)


# ---------------------------------------------------------------------------------------------- helpers
def _border_index(n: int, index: np.ndarray, mode: str) -> np.ndarray:
    """Map integer positions (any range) into [0, n) by a border rule: 'nearest' repeats the edge pixel,
    'mirror' reflects about it (d c b | a b c d; OpenCV's BORDER_REFLECT_101), 'symmetric' repeats it
    (c b a | a b c; SciPy's 'reflect')."""
    if n == 1:
        return np.zeros_like(index)
    if mode == "nearest":
        return np.clip(index, 0, n - 1)
    if mode == "mirror":
        period = 2 * (n - 1)
        j = np.mod(index, period)
        return np.minimum(j, period - j)
    if mode == "symmetric":
        period = 2 * n
        j = np.mod(index, period)
        return np.where(j < n, j, period - 1 - j)
    raise ValueError(mode)


def _filter_axis(x: np.ndarray, kernel: np.ndarray, axis: int, mode: str) -> np.ndarray:
    """Correlate ``x`` along ``axis`` with a centred 1-D ``kernel`` (odd length), borders by ``mode``."""
    r = len(kernel) // 2
    n = x.shape[axis]
    out = np.zeros_like(x)
    for k, w in enumerate(kernel):
        if w != 0:
            out += w * np.take(x, _border_index(n, np.arange(n) + k - r, mode), axis=axis)
    return out


def _filter2d(x: np.ndarray, kernel: np.ndarray, mode: str, axes=(1, 2)) -> np.ndarray:
    """Correlate the two ``axes`` of ``x`` with a centred 2-D ``kernel``, borders by ``mode``."""
    r0, r1 = kernel.shape[0] // 2, kernel.shape[1] // 2
    n0, n1 = x.shape[axes[0]], x.shape[axes[1]]
    out = np.zeros_like(x)
    for i, j in zip(*np.nonzero(kernel)):
        rows = _border_index(n0, np.arange(n0) + i - r0, mode)
        cols = _border_index(n1, np.arange(n1) + j - r1, mode)
        out += kernel[i, j] * np.take(np.take(x, rows, axis=axes[0]), cols, axis=axes[1])
    return out


def _gaussian_kernel(sigma: float, radius: int) -> np.ndarray:
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def gaussian_filter(x: np.ndarray, sigma: float, truncate: float = 4.0, mode: str = "nearest",
                    axes=(1, 2)) -> np.ndarray:
    """SciPy's ``ndimage.gaussian_filter`` over ``axes`` (radius ``int(truncate * sigma + 0.5)``)."""
    if sigma <= 0:
        return x.copy()
    kernel = _gaussian_kernel(sigma, int(truncate * sigma + 0.5))
    for axis in axes:
        x = _filter_axis(x, kernel, axis, mode)
    return x


def _bilinear(img: np.ndarray, rows: np.ndarray, cols: np.ndarray, mode: str) -> np.ndarray:
    """Sample ``img`` (N, H, W, C) at float positions ``rows``, ``cols`` (N, H, W), bilinearly; positions
    outside the image read through the border rule ``mode``."""
    n, h, w, _ = img.shape
    r0, c0 = np.floor(rows), np.floor(cols)
    fr, fc = (rows - r0)[..., None], (cols - c0)[..., None]
    r0, c0 = r0.astype(np.int64), c0.astype(np.int64)
    batch = np.arange(n)[:, None, None]

    def at(r, c):
        return img[batch, _border_index(h, r, mode), _border_index(w, c, mode)]

    return ((1 - fr) * (1 - fc) * at(r0, c0) + (1 - fr) * fc * at(r0, c0 + 1)
            + fr * (1 - fc) * at(r0 + 1, c0) + fr * fc * at(r0 + 1, c0 + 1))


def _each_image(x: np.ndarray, fn) -> np.ndarray:
    """Apply a uint8 PIL round trip ``fn`` to each image (N, H, W, 3) in [0, 1]; returns floats in [0, 1]."""
    from PIL import Image

    as_bytes = np.uint8(np.clip(x, 0, 1) * 255)  # the original handed PIL the uint8 test images
    return np.stack([np.asarray(fn(Image.fromarray(im)), dtype=np.float64) for im in as_bytes]) / 255


# ------------------------------------------------------------------------------------------ corruptions
# Each: (images in [0, 1] (N, H, W, 3), the severity's parameter, a NumPy generator) -> images.
def gaussian_noise(x, c, rng):
    return x + rng.normal(scale=c, size=x.shape)


def shot_noise(x, c, rng):
    return rng.poisson(x * c) / c


def impulse_noise(x, c, rng):
    """Salt and pepper on each value independently (scikit-image's ``random_noise(mode='s&p')``)."""
    flipped = rng.random(x.shape) < c
    salted = rng.random(x.shape) < 0.5
    out = x.copy()
    out[flipped & salted] = 1.0
    out[flipped & ~salted] = 0.0
    return out


def speckle_noise(x, c, rng):
    return x + x * rng.normal(scale=c, size=x.shape)


def gaussian_blur(x, c, rng):
    return gaussian_filter(x, c, truncate=4.0, mode="nearest")


def _disk(radius: float, alias_blur: float) -> np.ndarray:
    """A normalized disk of ``radius`` on a 17x17 grid, smoothed by a 3x3 Gaussian of ``alias_blur``."""
    t = np.arange(-8, 9)
    xx, yy = np.meshgrid(t, t)
    disk = ((xx ** 2 + yy ** 2) <= radius ** 2).astype(np.float64)
    disk /= disk.sum()
    k = _gaussian_kernel(alias_blur, 1)  # OpenCV's 3-tap Gaussian for a given sigma
    return _filter2d(disk[None, :, :], np.outer(k, k), "mirror")[0]


def defocus_blur(x, c, rng):
    radius, alias_blur = c
    return _filter2d(x, _disk(radius, alias_blur), "mirror")


def motion_kernel(radius: float, sigma: float, angle_deg: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ImageMagick's motion blur: ``2 * ceil(radius) + 1`` taps along a line at ``angle_deg`` starting at
    the pixel itself (one-sided), weighted by a Gaussian of ``sigma`` in the tap index. Returns the
    weights and the integer column and row offsets of each tap."""
    width = int(2 * np.ceil(radius) + 1)
    i = np.arange(width, dtype=np.float64)
    weights = np.exp(-(i * i) / (2 * sigma * sigma))
    weights /= weights.sum()
    a = np.deg2rad(angle_deg)
    dx = np.ceil(i * np.cos(a) - 0.5).astype(np.int64)
    dy = np.ceil(i * np.sin(a) - 0.5).astype(np.int64)
    return weights, dx, dy


def motion_blur(x, c, rng):
    radius, sigma = c
    angles = rng.uniform(-45, 45, size=len(x))
    n, h, w, _ = x.shape
    out = np.zeros_like(x)
    rows, cols = np.arange(h)[:, None], np.arange(w)[None, :]
    for k, angle in enumerate(angles):
        weights, dx, dy = motion_kernel(radius, sigma, angle)
        for wt, ox, oy in zip(weights, dx, dy):  # edge pixels repeat (ImageMagick's default)
            out[k] += wt * x[k][np.clip(rows + oy, 0, h - 1), np.clip(cols + ox, 0, w - 1)]
    return np.round(np.clip(out, 0, 1) * 255) / 255  # the original went through an 8-bit PNG


def _plasma_fractal(rng, size: int = 32, decay: float = 3.0) -> np.ndarray:
    """A size x size height map in [0, 1] by the diamond-square algorithm (the original's fog layer)."""
    m = np.zeros((size, size))
    step, wibble = size, 100.0

    def wibbled(a):
        return a / 4 + wibble * rng.uniform(-wibble, wibble, a.shape)

    while step >= 2:
        half = step // 2
        corners = m[0:size:step, 0:size:step]
        square = corners + np.roll(corners, -1, axis=0)
        square += np.roll(square, -1, axis=1)
        m[half:size:step, half:size:step] = wibbled(square)
        centres = m[half:size:step, half:size:step]
        corners = m[0:size:step, 0:size:step]
        left = centres + np.roll(centres, 1, axis=0) + corners + np.roll(corners, -1, axis=1)
        m[0:size:step, half:size:step] = wibbled(left)
        top = centres + np.roll(centres, 1, axis=1) + corners + np.roll(corners, -1, axis=0)
        m[half:size:step, 0:size:step] = wibbled(top)
        step //= 2
        wibble /= decay
    m -= m.min()
    return m / m.max()


def fog(x, c, rng):
    strength, decay = c
    peak = x.max(axis=(1, 2, 3), keepdims=True)
    layer = np.stack([_plasma_fractal(rng, x.shape[1], decay) for _ in range(len(x))])[..., None]
    return (x + strength * layer) * peak / (peak + strength)


def contrast(x, c, rng):
    means = x.mean(axis=(1, 2), keepdims=True)
    return (x - means) * c + means


def _hsv_edit(x, channel: int, scale: float, shift: float):
    from matplotlib.colors import hsv_to_rgb, rgb_to_hsv

    hsv = rgb_to_hsv(np.clip(x, 0, 1))
    hsv[..., channel] = np.clip(hsv[..., channel] * scale + shift, 0, 1)
    return hsv_to_rgb(hsv)


def brightness(x, c, rng):
    return _hsv_edit(x, 2, 1.0, c)


def saturate(x, c, rng):
    return _hsv_edit(x, 1, c[0], c[1])


def jpeg_compression(x, c, rng):
    from PIL import Image

    def roundtrip(im):
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=c)
        return Image.open(buf).convert("RGB")

    return _each_image(x, roundtrip)


def pixelate(x, c, rng):
    from PIL import Image

    def blocky(im):
        small = int(im.width * c)
        return im.resize((small, small), Image.BOX).resize(im.size, Image.BOX)

    return _each_image(x, blocky)


def _affine_from_points(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 affine map taking three (x, y) points ``src`` to ``dst``."""
    a = np.hstack([src, np.ones((3, 1))])
    return np.linalg.solve(a, dst).T


def elastic_transform(x, c, rng):
    """A random affine warp of the corners of the centre square, then a smooth random displacement field
    (uniform noise blurred by a Gaussian of ``c[1]`` pixels, scaled by ``c[0]``)."""
    alpha, sigma, shift = c
    n, h, w, _ = x.shape
    centre, half = np.float64(h // 2), h // 3
    src = np.array([[centre + half, centre + half], [centre + half, centre - half], [centre - half] * 2])
    rows, cols = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    warped = np.empty_like(x)
    for k in range(n):
        dst = (src + rng.uniform(-shift, shift, size=src.shape)).astype(np.float32).astype(np.float64)
        m = np.vstack([_affine_from_points(src, dst), [0, 0, 1]])
        inv = np.linalg.inv(m)  # output pixel (x, y) reads the input at inv @ (x, y, 1)
        sx = inv[0, 0] * cols + inv[0, 1] * rows + inv[0, 2]
        sy = inv[1, 0] * cols + inv[1, 1] * rows + inv[1, 2]
        warped[k] = _bilinear(x[k:k + 1], sy[None], sx[None], "mirror")[0]
    fields = rng.uniform(-1, 1, size=(2, n, h, w))
    dx = gaussian_filter(fields[0], sigma, truncate=3.0, mode="symmetric") * alpha
    dy = gaussian_filter(fields[1], sigma, truncate=3.0, mode="symmetric") * alpha
    return _bilinear(warped, rows[None] + dy, cols[None] + dx, "symmetric")


@dataclass(frozen=True)
class Corruption:
    name: str
    family: str
    fn: Callable
    params: tuple  # one per severity 1-5, as published for CIFAR-10


_S = 32  # image size the elastic parameters are relative to
CORRUPTIONS: dict[str, Corruption] = {c.name: c for c in [
    Corruption("gaussian_noise", "noise", gaussian_noise, (0.04, 0.06, 0.08, 0.09, 0.10)),
    Corruption("shot_noise", "noise", shot_noise, (500, 250, 100, 75, 50)),
    Corruption("impulse_noise", "noise", impulse_noise, (0.01, 0.02, 0.03, 0.05, 0.07)),
    Corruption("speckle_noise", "noise", speckle_noise, (0.06, 0.1, 0.12, 0.16, 0.2)),
    Corruption("defocus_blur", "blur", defocus_blur, ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1))),
    Corruption("gaussian_blur", "blur", gaussian_blur, (0.4, 0.6, 0.7, 0.8, 1.0)),
    Corruption("motion_blur", "blur", motion_blur, ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5))),
    Corruption("fog", "weather", fog, ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75))),
    Corruption("brightness", "weather", brightness, (0.05, 0.1, 0.15, 0.2, 0.3)),
    Corruption("contrast", "digital", contrast, (0.75, 0.5, 0.4, 0.3, 0.15)),
    Corruption("saturate", "digital", saturate, ((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2))),
    Corruption("pixelate", "digital", pixelate, (0.95, 0.9, 0.85, 0.75, 0.65)),
    Corruption("jpeg_compression", "digital", jpeg_compression, (80, 65, 58, 50, 40)),
    Corruption("elastic_transform", "digital", elastic_transform,
               ((0, 0, _S * 0.08), (_S * 0.05, _S * 0.2, _S * 0.07), (_S * 0.08, _S * 0.06, _S * 0.06),
                (_S * 0.1, _S * 0.04, _S * 0.05), (_S * 0.1, _S * 0.03, _S * 0.03))),
]}
FAMILIES = tuple(dict.fromkeys(c.family for c in CORRUPTIONS.values()))


def check_names(names) -> list[str]:
    names = list(names)
    unknown = [n for n in names if n not in CORRUPTIONS]
    if unknown:
        raise NormlabError(f"unknown corruption {unknown[0]!r}; choose from {', '.join(CORRUPTIONS)}")
    if not names:
        raise NormlabError("pass at least one corruption")
    return names


def check_severities(severities) -> list[int]:
    severities = list(severities)
    bad = [s for s in severities if s not in SEVERITIES]
    if bad or not severities:
        raise NormlabError(f"severities must be among 1-5, got {bad[0] if bad else 'none'}")
    return severities


def corrupt(images: torch.Tensor, name: str, severity: int, seed: int = 0) -> torch.Tensor:
    """``images`` (uint8, (N, 3, H, W)) with corruption ``name`` at ``severity`` (1-5), uint8 again.
    Deterministic in (images, name, severity, seed)."""
    check_names([name])
    check_severities([severity])
    check_int(seed, "seed", 0, MAX_SEED)
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
        raise NormlabError(f"images must be uint8 of shape (N, 3, H, W), got {images.dtype} {tuple(images.shape)}")
    spec = CORRUPTIONS[name]
    index = list(CORRUPTIONS).index(name)
    x = images.permute(0, 2, 3, 1).numpy().astype(np.float64) / 255
    out = np.empty(x.shape, dtype=np.uint8)
    for start in range(0, len(x), BLOCK):
        rng = np.random.default_rng([seed, index, severity, start // BLOCK])
        block = x[start:start + BLOCK]
        if len(block) < BLOCK:  # a short block is padded, so its images get the draws a whole block gives
            block = np.concatenate([block, np.zeros((BLOCK - len(block),) + block.shape[1:])])
        y = spec.fn(block, spec.params[severity - 1], rng)[:min(BLOCK, len(x) - start)]
        out[start:start + len(y)] = np.uint8(np.clip(y, 0, 1) * 255)
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()
