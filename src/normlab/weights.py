"""Weights files: a trained model as ``model.safetensors`` with its architecture and norm in the metadata,
and back. safetensors holds tensors only, so reading a file runs no code."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from .version import __version__
from .errors import NormlabError
from .models import build_model
from .runs import WEIGHTS, atomic_write_bytes


def _canonical(blob: bytes) -> bytes:
    """The same safetensors file with its metadata keys in sorted order: safetensors writes them in hash
    order, which differs between processes, so identical runs would not give identical files."""
    size = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + size])
    if "__metadata__" in header:
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the format aligns the data that follows the header to 8 bytes
    return len(text).to_bytes(8, "little") + text + blob[8 + size:]


def save_weights(model: torch.nn.Module, path: str | Path, arch: str, norm: str) -> None:
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    blob = save(tensors, metadata={"arch": arch, "norm": norm, "normlab": __version__})
    atomic_write_bytes(path, _canonical(blob))


def read_weights(path: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """(metadata, tensors) of a weights file, or a one-line error naming the file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        return meta, load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise NormlabError(f"{path}: not a readable safetensors file ({exc}); pass a model.safetensors "
                           "written by normlab") from None


def _mismatch(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> str:
    """Which keys and shapes keep ``state`` from loading into ``model``."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
              if k in state and state[k].shape != v.shape]
    parts = [f"{len(missing)} missing (e.g. {missing[0]})" if missing else "",
             f"{len(extra)} unexpected (e.g. {extra[0]})" if extra else "",
             f"{len(shapes)} of another shape (e.g. {shapes[0]})" if shapes else ""]
    return "; ".join(p for p in parts if p) or "values do not load"


def load_model(path: str | Path) -> torch.nn.Module:
    """A trained model from a run folder or a ``.safetensors`` weights file, in eval mode. It maps float
    images in [0, 1], (N, 3, 32, 32), to logits (N, 10)."""
    path = Path(path)
    if path.is_dir():
        path = path / WEIGHTS
    if not path.is_file():
        raise NormlabError(f"{path}: no weights file here; pass a run folder or a .safetensors file")
    meta, state = read_weights(path)
    if "arch" not in meta or "norm" not in meta:
        raise NormlabError(f"{path}: weights carry no arch/norm metadata; they were not written by normlab")
    model = build_model(meta["arch"], meta["norm"])
    try:
        model.load_state_dict(state)
    except RuntimeError:
        raise NormlabError(f"{path}: weights do not fit {meta['arch']}/{meta['norm']}: "
                           f"{_mismatch(model, state)}") from None
    return model.eval()
