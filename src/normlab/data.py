"""Find, download, verify and load CIFAR-10 into uint8 tensors.

The data directory is, in order: the ``data_dir`` argument (``--data-dir``), the ``NORMLAB_DATA``
environment variable, ``./data``. Inside it we accept the official python layout
``cifar-10-batches-py/`` or the official ``cifar-10-python.tar.gz``; if neither is there we download
the archive (MD5-checked, with a progress bar) and extract it safely.

The batch files are pickles. We never unpickle them with the stock unpickler: a restricted one admits
only the numpy globals the format needs, so a tampered file cannot run code.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from .errors import NormlabError

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ARCHIVE = "cifar-10-python.tar.gz"
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
META_FILE = "batches.meta"
ROWS_PER_BATCH = 10_000
ENV_VAR = "NORMLAB_DATA"
OFFLINE_VAR = "NORMLAB_OFFLINE"  # set to 1 to never download
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# Training-set channel statistics, as the reference used them (models standardize their inputs with them).
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2471, 0.2435, 0.2616)
SPLIT_SEED = 2024  # the validation split is the same for every run, whatever its seed


@dataclass
class Cifar10:
    """The whole data set in memory: images uint8 (N, 3, 32, 32), labels int64 (N,)."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: tuple[str, ...] = CLASSES


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    return Path(data_dir or os.environ.get(ENV_VAR) or "data")


# --- safe unpickling -------------------------------------------------------------------------------
def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    """Protocol-2 pickles written by Python 3 carry bytes as ``_codecs.encode(str, 'latin1')``."""
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"forbidden encoding {encoding!r}")
    return text.encode("latin1")


_ALLOWED = {
    ("_codecs", "encode"): _latin1_encode,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    # numpy's array pickles name the reconstructor by its numpy 1.x path; numpy 2 moved it.
    ("numpy.core.multiarray", "_reconstruct"): np.ndarray.__reduce__(np.zeros(0))[0],
    ("numpy._core.multiarray", "_reconstruct"): np.ndarray.__reduce__(np.zeros(0))[0],
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"forbidden global {module}.{name}") from None


def _unpickle(path: Path):
    if not path.is_file():
        raise NormlabError(f"{path}: file not found; point --data-dir (or ${ENV_VAR}) at a folder holding "
                           f"{FOLDER}/ or {ARCHIVE}")
    try:
        with open(path, "rb") as fh:
            return _RestrictedUnpickler(fh, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            UnicodeDecodeError, MemoryError) as exc:
        raise NormlabError(f"{path}: not a readable CIFAR-10 pickle ({exc or type(exc).__name__}); "
                           "delete it to download a fresh copy") from None


def _get(d: dict, key: str):
    """Batch dicts use str keys (latin1) or bytes keys, depending on how they were written."""
    if key in d:
        return d[key]
    return d.get(key.encode())


def read_batch(path: str | os.PathLike, rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read one batch file; return images uint8 (rows, 3, 32, 32) and labels int64 (rows,)."""
    path = Path(path)
    rows = rows or ROWS_PER_BATCH
    d = _unpickle(path)
    if not isinstance(d, dict):
        raise NormlabError(f"{path}: expected a dict, found {type(d).__name__}")
    data, labels = _get(d, "data"), _get(d, "labels")
    if data is None or labels is None:
        raise NormlabError(f"{path}: missing 'data' or 'labels' entry")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8:
        raise NormlabError(f"{path}: 'data' must be a uint8 array, found "
                           f"{getattr(data, 'dtype', type(data).__name__)}")
    if data.shape != (rows, 3072):
        raise NormlabError(f"{path}: 'data' has shape {data.shape}, expected ({rows}, 3072)")
    labels = np.asarray(labels)
    if labels.shape != (rows,):
        raise NormlabError(f"{path}: 'labels' must be {rows} integers, found shape {labels.shape}; "
                           "delete the file to download a fresh copy")
    if not np.issubdtype(labels.dtype, np.integer):
        raise NormlabError(f"{path}: 'labels' must be integers, found {labels.dtype}; delete the file to "
                           "download a fresh copy")
    if labels.min() < 0 or labels.max() > 9:
        raise NormlabError(f"{path}: labels must lie in 0..9, found {labels.min()}..{labels.max()}")
    return data.reshape(rows, 3, 32, 32), labels.astype(np.int64)


def read_classes(folder: Path) -> tuple[str, ...]:
    path = folder / META_FILE
    d = _unpickle(path)
    names = _get(d, "label_names") if isinstance(d, dict) else None
    if not isinstance(names, list) or len(names) != 10:
        raise NormlabError(f"{path}: expected 10 'label_names'")
    return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)


# --- archive ---------------------------------------------------------------------------------------
def md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def safe_extract(archive: Path, dest: Path) -> None:
    """Extract a tar archive, refusing any member that would land outside ``dest`` or is not a plain
    file or folder (links, devices)."""
    dest = Path(dest).resolve()
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            for m in members:
                target = (dest / m.name).resolve()
                if PurePosixPath(m.name).is_absolute() or ".." in PurePosixPath(m.name).parts or \
                        not target.is_relative_to(dest):
                    raise NormlabError(f"{archive}: unsafe member {m.name!r} points outside {dest}; "
                                       "refusing to extract")
                if not (m.isfile() or m.isdir()):
                    raise NormlabError(f"{archive}: member {m.name!r} is not a plain file or folder; "
                                       "refusing to extract")
            if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4: a second, standard line of defence
                tar.extractall(dest, members=members, filter="data")
            else:
                tar.extractall(dest, members=members)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise NormlabError(f"{archive}: cannot extract ({exc}); delete it to download a fresh copy") from None


def download(data_dir: Path) -> Path:
    """Download the official archive into ``data_dir`` with a progress bar, checking its MD5."""
    import pooch  # imported here: only the download path needs it

    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        path = pooch.retrieve(URL, known_hash=f"md5:{ARCHIVE_MD5}", fname=ARCHIVE, path=data_dir,
                              progressbar=True)
    except Exception as exc:  # network errors come in many types; all mean the same to the user
        raise NormlabError(f"could not download CIFAR-10 from {URL} ({exc}); download it by hand into "
                           f"{data_dir}/ or point --data-dir at a copy") from None
    return Path(path)


def find(data_dir: str | os.PathLike | None = None, download_missing: bool = True) -> Path:
    """Return the folder holding the batch files, extracting or downloading the archive if needed."""
    root = resolve_data_dir(data_dir)
    if os.environ.get(OFFLINE_VAR, "") not in ("", "0"):
        download_missing = False
    if (root / TRAIN_FILES[0]).exists():  # pointed straight at cifar-10-batches-py/
        return root
    folder = root / FOLDER
    if folder.is_dir():
        return folder
    archive = root / ARCHIVE
    if archive.is_file():
        if md5(archive) != ARCHIVE_MD5:
            raise NormlabError(f"{archive}: MD5 does not match the official archive; delete it to "
                               "download a fresh copy")
    elif download_missing:
        archive = download(root)
    else:
        raise NormlabError(f"no CIFAR-10 in {root}: expected {FOLDER}/ or {ARCHIVE}; set --data-dir "
                           f"or ${ENV_VAR}, or allow the download (unset ${OFFLINE_VAR})")
    safe_extract(archive, root)
    if not folder.is_dir():
        raise NormlabError(f"{archive}: holds no {FOLDER}/ folder")
    return folder


_CACHE: dict[Path, Cifar10] = {}


def load_cifar10(data_dir: str | os.PathLike | None = None, download_missing: bool = True) -> Cifar10:
    """Load (once per process) CIFAR-10 as uint8 tensors."""
    folder = find(data_dir, download_missing).resolve()
    if folder not in _CACHE:
        train = [read_batch(folder / f) for f in TRAIN_FILES]
        test_x, test_y = read_batch(folder / TEST_FILE)
        _CACHE[folder] = Cifar10(
            train_x=torch.from_numpy(np.concatenate([x for x, _ in train])),
            train_y=torch.from_numpy(np.concatenate([y for _, y in train])),
            test_x=torch.from_numpy(test_x.copy()),
            test_y=torch.from_numpy(test_y),
            classes=read_classes(folder),
        )
    return _CACHE[folder]


def split(data: Cifar10, train_size: int | None, val_size: int):
    """Training images (the first ``train_size``), and the held-out set as ``(name, images, labels)``: the
    last ``val_size`` training images of a fixed shuffle when asked for ("val"), the test set otherwise."""
    n = len(data.train_x)
    if not 0 <= val_size < n:
        raise NormlabError(f"--val-size must be between 0 and {n - 1}, got {val_size}")
    train_x, train_y = data.train_x, data.train_y
    held = ("test", data.test_x, data.test_y)
    if val_size:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(SPLIT_SEED))
        held = ("val", train_x[order[-val_size:]], train_y[order[-val_size:]])
        train_x, train_y = train_x[order[:-val_size]], train_y[order[:-val_size]]
    if train_size is not None:
        if not 1 <= train_size <= len(train_x):
            raise NormlabError(f"--train-size must be between 1 and {len(train_x)}, got {train_size}")
        train_x, train_y = train_x[:train_size], train_y[:train_size]
    return train_x, train_y, held


def load_image(path: str | os.PathLike) -> torch.Tensor:
    """An image file of any size and mode as uint8 (3, 32, 32), resized with bicubic filtering, or a
    one-line error naming the file. Oversized headers (decompression bombs) are refused before decoding;
    16-bit images keep their tones (Pillow's RGB conversion would clip them to white)."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
                    wide = np.asarray(im, dtype=np.int64)
                    peak = 65535 if im.mode.startswith("I;16") else int(wide.max(initial=0))
                    scale = 1 if peak <= 255 else 257 if peak <= 65535 else 16843009
                    im = Image.fromarray((wide // scale).clip(0, 255).astype(np.uint8), "L")
                im = im.convert("RGB").resize((32, 32), Image.Resampling.BICUBIC)
    except FileNotFoundError:
        raise NormlabError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise NormlabError(f"{path}: is a folder, not an image file") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise NormlabError(f"{path}: the image claims more than {Image.MAX_IMAGE_PIXELS:,} pixels, too many to "
                           "decode safely; pass a smaller image") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise NormlabError(f"{path}: not an image Pillow can read ({exc.__class__.__name__}); pass a PNG, "
                           "JPEG or other image file") from None
    return torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8).view(32, 32, 3).permute(2, 0, 1).contiguous()
