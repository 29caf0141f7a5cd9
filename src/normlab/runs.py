"""Run folders and atomic writes.

A run folder holds ``config.json`` (written first), ``metrics.jsonl`` (one line per finished epoch),
``checkpoint.pt`` (the last finished epoch, while the run is in progress), and once finished
``model.safetensors``, the plots and ``results.json``. ``results.json`` is written last: its presence
means "finished". Every file is written to a temporary name and renamed into place, so an interrupted
process never leaves a half-written file behind.
"""
from __future__ import annotations

import io
import json
import os
from pathlib import Path

import torch

from .errors import NormlabError

CONFIG = "config.json"
METRICS = "metrics.jsonl"
CHECKPOINT = "checkpoint.pt"
RESULTS = "results.json"
WEIGHTS = "model.safetensors"


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def save_figure(fig, path: str | os.PathLike, **kwargs) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format=Path(path).suffix.lstrip(".") or "png", **kwargs)
    atomic_write_bytes(path, buf.getvalue())


def read_json(path: str | os.PathLike):
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise NormlabError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise NormlabError(f"{path}: not valid JSON ({exc})") from None


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class RunDir:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    @property
    def finished(self) -> bool:
        return (self / RESULTS).is_file()

    @property
    def interrupted(self) -> bool:
        return not self.finished and (self / CHECKPOINT).is_file()

    def results(self) -> dict:
        return read_json(self / RESULTS)

    def metrics(self) -> list[dict]:
        return read_jsonl(self / METRICS)

    def prepare(self, config: dict, *, resume: bool, overwrite: bool, defaults: dict | None = None) -> bool:
        """Make the folder ready for training ``config``; return True if resuming from a checkpoint.

        ``defaults`` maps a key of ``config`` whose value is a dict (e.g. "recipe") to the values its
        fields had before they existed: a run saved by an older normlab lacks them, and resuming it
        with those values is resuming it with the same settings."""
        if self.path.exists() and not self.path.is_dir():
            raise NormlabError(f"{self.path} is a file; pass --out with a folder path")
        if overwrite:
            self.clear()
        elif self.finished:
            raise NormlabError(f"{self.path} holds a finished run; pass --overwrite to replace it "
                               "or --out to write elsewhere")
        elif self.interrupted and not resume:
            done = len(self.metrics())
            raise NormlabError(f"{self.path} holds an interrupted run ({done} epochs done); pass --resume "
                               "to continue it or --overwrite to start over")
        if self.interrupted:
            saved = read_json(self / CONFIG)
            for key, fill in (defaults or {}).items():
                if isinstance(saved.get(key), dict):
                    saved[key] = {**fill, **saved[key]}
            diff = sorted(k for k in set(saved) | set(config) if saved.get(k) != config.get(k))
            if diff:
                raise NormlabError(f"{self.path} was started with different settings ({', '.join(diff)}); "
                                   "resume it with the same options, or pass --overwrite to start over")
            return True
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self / CONFIG, config)
        (self / METRICS).unlink(missing_ok=True)
        return False

    def clear(self) -> None:
        if not self.path.is_dir():
            return
        for f in self.path.iterdir():
            if f.is_file() and (f.suffix in {".json", ".jsonl", ".pt", ".safetensors", ".png", ".md",
                                             ".html", ".tmp"}):
                f.unlink()

    def append_metrics(self, row: dict) -> None:
        # Rewriting the whole (small) file atomically keeps it consistent with the checkpoint.
        rows = self.metrics() + [row]
        atomic_write_text(self / METRICS, "".join(json.dumps(r) + "\n" for r in rows))

    def truncate_metrics(self, epochs: int) -> None:
        rows = self.metrics()[:epochs]
        atomic_write_text(self / METRICS, "".join(json.dumps(r) + "\n" for r in rows))

    def save_checkpoint(self, state: dict) -> None:
        buf = io.BytesIO()
        torch.save(state, buf)
        atomic_write_bytes(self / CHECKPOINT, buf.getvalue())

    def load_checkpoint(self) -> dict:
        try:
            return torch.load(self / CHECKPOINT, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise NormlabError(f"{self / CHECKPOINT}: unreadable checkpoint ({exc}); pass --overwrite "
                               "to start over") from None
