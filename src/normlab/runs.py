"""Run folders, owned by normlab, and atomic writes.

A run folder holds ``.normlab-run`` (the marker, written first: normlab only ever writes into, resumes or
replaces a folder that carries it), ``config.json``, ``metrics.jsonl`` (one line per finished epoch),
``checkpoint.pt`` (the last finished epoch, while the run is in progress), and once finished
``model.safetensors``, the plots and ``results.json``. ``results.json`` is written last: its presence
means "finished". Every file is written to a temporary name and renamed into place, so an interrupted
process never leaves a half-written file behind.

While a process trains into a folder it holds an exclusive lock on it (``.<name>.lock`` beside it, with
the process id inside), so a second process asking for the same folder gets a one-line error instead of
mixing its epochs into the first one's. ``--overwrite`` trains the new run into a hidden sibling folder and
swaps it in only once it has finished: until then the old run is untouched.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import os
import shutil
from pathlib import Path

from .errors import NormlabError

MARKER = ".normlab-run"
CONFIG = "config.json"
METRICS = "metrics.jsonl"
CHECKPOINT = "checkpoint.pt"
RESULTS = "results.json"
WEIGHTS = "model.safetensors"


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def _finite(obj):
    """``obj`` with every NaN or infinity replaced by None: JSON has no such numbers."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def to_json(obj, **kwargs) -> str:
    """Strict JSON (no NaN or Infinity, which other readers reject)."""
    return json.dumps(_finite(obj), allow_nan=False, **kwargs)


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    atomic_write_text(path, to_json(obj, indent=2) + "\n")


def save_figure(fig, path: str | os.PathLike, **kwargs) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format=Path(path).suffix.lstrip(".") or "png", **kwargs)
    atomic_write_bytes(path, buf.getvalue())


def read_json(path: str | os.PathLike, kind: type | None = dict):
    """The JSON in ``path`` (of type ``kind`` where given), or a one-line error naming the file."""
    try:
        value = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise NormlabError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise NormlabError(f"{path}: not valid JSON ({exc}); restore or remove the file") from None
    except OSError as exc:
        raise NormlabError(f"{path}: cannot read it ({exc.strerror})") from None
    if kind is not None and not isinstance(value, kind):
        raise NormlabError(f"{path}: expected a JSON {'object' if kind is dict else kind.__name__}, got "
                           f"{type(value).__name__}; restore or remove the file")
    return value


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if not isinstance(row, dict):
            raise NormlabError(f"{path}: line {number} is not a JSON object; remove the line (or the run, "
                               "with --overwrite) and try again")
        rows.append(row)
    return rows


class RunDir:
    """A run folder. ``path`` is where the run lives; ``work`` is where it is being written (the same
    folder, or a hidden sibling while an ``--overwrite`` run replaces a finished one)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.work = self.path

    def __truediv__(self, name: str) -> Path:
        return self.work / name

    @property
    def finished(self) -> bool:
        return (self.path / RESULTS).is_file()

    @property
    def interrupted(self) -> bool:
        return not self.finished and (self.path / CHECKPOINT).is_file()

    def results(self) -> dict:
        return read_json(self.path / RESULTS)

    def metrics(self) -> list[dict]:
        return read_jsonl(self / METRICS)

    def is_normlab_run(self) -> bool:
        """The folder carries normlab's marker, or is a run folder of a normlab from before the marker
        (a config.json naming an arch and a norm)."""
        if (self.path / MARKER).is_file():
            return True
        try:
            saved = json.loads((self.path / CONFIG).read_text())
        except (OSError, ValueError):
            return False
        return isinstance(saved, dict) and {"arch", "norm", "recipe"} <= saved.keys()

    # --- the lock ---------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def locked(self):
        """Hold the folder's exclusive lock; a one-line error if another process holds it."""
        from filelock import FileLock, Timeout

        lock_path = self.path.parent / f".{self.path.name}.lock"
        try:
            lock_path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise NormlabError(f"{self.path.parent}: cannot create the folder ({exc.strerror}); pass --out "
                               "with a folder you can write to") from None

        def write_pid(fd: int) -> None:
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())

        lock = FileLock(lock_path, timeout=0, on_acquired=write_pid)
        try:
            lock.acquire()
        except Timeout:
            try:
                pid = lock_path.read_text().strip() or "?"
            except OSError:
                pid = "?"
            raise NormlabError(f"{self.path} is already being trained by another process (pid {pid}); wait "
                               "for it to finish or pass another --out") from None
        except OSError as exc:
            raise NormlabError(f"{self.path.parent}: cannot write here ({exc.strerror}); pass --out with a "
                               "folder you can write to") from None
        try:
            yield self
        finally:
            lock_path.unlink(missing_ok=True)  # while still held: a process that opened it meanwhile fails
            lock.release()

    # --- preparing and finishing ------------------------------------------------------------------------
    def prepare(self, config: dict, *, resume: bool, overwrite: bool, same=None) -> bool:
        """Make the folder ready for training ``config`` (call it holding the lock); return True if
        resuming from a checkpoint. ``same(saved_config)`` maps a saved config.json to the form of
        ``config`` (fields added since it was written, with the values that keep the old behaviour), so a
        run of an older normlab resumes when its settings are the same."""
        if self.path.exists() and not self.path.is_dir():
            raise NormlabError(f"{self.path} is a file; pass --out with a folder path")
        occupied = self.path.is_dir() and any(p.name != MARKER for p in self.path.iterdir())
        if occupied and not self.is_normlab_run():
            raise NormlabError(f"{self.path} already holds files that are not a normlab run; pass --out with "
                               "a new or empty folder (normlab never writes over other files)")
        if occupied and overwrite:
            # Train beside it; the old run stays as it is until the new one has finished (commit).
            self.work = self.path.parent / f".{self.path.name}.new"
            shutil.rmtree(self.work, ignore_errors=True)  # a replacement that never finished
            self._create(config)
            return False
        if self.finished:
            raise NormlabError(f"{self.path} holds a finished run; pass --overwrite to replace it "
                               "or --out to write elsewhere")
        if self.interrupted and not resume:
            raise NormlabError(f"{self.path} holds an interrupted run ({len(self.metrics())} epochs done); pass "
                               "--resume to continue it or --overwrite to start over")
        if self.interrupted:
            saved = read_json(self.path / CONFIG)
            saved = same(saved) if same else saved
            diff = sorted(k for k in set(saved) | set(config) if saved.get(k) != config.get(k))
            if diff:
                raise NormlabError(f"{self.path} was started with different settings ({', '.join(diff)}); "
                                   "resume it with the same options, or pass --overwrite to start over")
            return True
        self._create(config)
        return False

    def _create(self, config: dict) -> None:
        try:
            self.work.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.work / MARKER, {"normlab": "run folder"})
            atomic_write_json(self.work / CONFIG, config)
        except OSError as exc:
            raise NormlabError(f"{self.work}: cannot write the run folder ({exc.strerror}); pass --out with a "
                               "folder you can write to") from None
        (self.work / METRICS).unlink(missing_ok=True)

    def discard(self) -> None:
        """Remove a replacement run that did not finish (after ``prepare(overwrite=True)``); the old run is
        untouched. A plain run folder stays as it is, to be resumed."""
        if self.work != self.path:
            shutil.rmtree(self.work, ignore_errors=True)
            self.work = self.path

    def commit(self) -> None:
        """Put a finished replacement run in place of the old one (after ``prepare(overwrite=True)``)."""
        if self.work == self.path:
            return
        for f in self.path.iterdir():  # files the user kept in the old folder come along
            if not (self.work / f.name).exists() and f.name != CHECKPOINT and not f.name.endswith(".tmp"):
                os.replace(f, self.work / f.name)
        old = self.path.parent / f".{self.path.name}.old"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(self.path, old)
        os.replace(self.work, self.path)
        shutil.rmtree(old, ignore_errors=True)
        self.work = self.path

    # --- per-epoch state --------------------------------------------------------------------------------
    def append_metrics(self, row: dict) -> None:
        # Rewriting the whole (small) file atomically keeps it consistent with the checkpoint.
        rows = self.metrics() + [row]
        atomic_write_text(self / METRICS, "".join(to_json(r) + "\n" for r in rows))

    def truncate_metrics(self, epochs: int) -> None:
        rows = self.metrics()[:epochs]
        atomic_write_text(self / METRICS, "".join(to_json(r) + "\n" for r in rows))

    def save_checkpoint(self, state: dict) -> None:
        import torch

        buf = io.BytesIO()
        torch.save(state, buf)
        atomic_write_bytes(self / CHECKPOINT, buf.getvalue())

    def load_checkpoint(self) -> dict:
        import torch

        try:
            return torch.load(self / CHECKPOINT, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise NormlabError(f"{self / CHECKPOINT}: unreadable checkpoint ({exc}); pass --overwrite "
                               "to start over") from None


def run_val_size(path: str | Path) -> int:
    """How many held-out images a ``--val-size`` run was judged on, from its run folder's config (or the
    folder beside its weights file); ``data.split(data, None, n)`` gives those very images back."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    config = folder / CONFIG
    if not config.is_file():
        raise NormlabError(f"{folder}: no {CONFIG} here, so its validation split is unknown; "
                           "pass the run folder of a --val-size run, or use --split test")
    val_size = read_json(config).get("val_size") or 0
    if isinstance(val_size, bool) or not isinstance(val_size, int) or val_size < 0:
        raise NormlabError(f"{config}: val_size is {val_size!r}, not a number of images; restore the file")
    if not val_size:
        raise NormlabError(f"{folder} was trained on all training images (no --val-size), so it has no "
                           "validation split; use --split test")
    return val_size
