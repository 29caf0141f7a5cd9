import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch


# The tests train many tiny runs, where a compile costs more than it saves: `--compile auto` stays eager
# in them. tests/test_compile.py covers the compiled path by asking for it.
os.environ.setdefault("NORMLAB_COMPILE", "off")


def pytest_configure(config):
    """Under pytest-xdist (`-n auto`), share the cores among the workers: each worker, and the CLI
    processes it starts (OMP_NUM_THREADS), gets its slice, instead of every worker using every core."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        threads = max(1, (os.cpu_count() or 1) // int(workers))
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The real CIFAR-10 (NORMLAB_DATA, as .ci/run sets it); tests that need it skip without it."""
    d = os.environ.get("NORMLAB_DATA")
    if not d or not (Path(d) / "cifar-10-batches-py").is_dir() and not (Path(d) / "data_batch_1").is_file():
        pytest.skip("real CIFAR-10 not found: set NORMLAB_DATA to a folder holding cifar-10-batches-py/")
    return Path(d)


def write_batch(path: Path, rows: int, *, bytes_keys: bool = False, seed: int = 0, data=None, labels=None) -> None:
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (rows, 3072), dtype=np.uint8) if data is None else data
    labels = [int(v) for v in rng.integers(0, 10, rows)] if labels is None else labels
    d = {"batch_label": "synthetic", "data": data, "labels": labels, "filenames": [f"{i}.png" for i in range(rows)]}
    if bytes_keys:
        d = {k.encode(): v for k, v in d.items()}
    path.write_bytes(pickle.dumps(d, protocol=2))


def write_dataset(folder: Path, rows: int, bytes_keys: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, 6):
        write_batch(folder / f"data_batch_{i}", rows, bytes_keys=bytes_keys, seed=i)
    write_batch(folder / "test_batch", rows, bytes_keys=bytes_keys, seed=9)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    meta = {"label_names": names, "num_cases_per_batch": rows}
    if bytes_keys:
        meta = {k.encode(): ([n.encode() for n in v] if isinstance(v, list) else v) for k, v in meta.items()}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return folder


def run_cli(*args, cwd=None, env_extra=None, timeout=600) -> subprocess.CompletedProcess:
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "normlab", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=timeout)


def assert_one_line_error(proc, *fragments):
    """The CLI failed as users should see it: exit 2, one line naming the problem, no traceback."""
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("normlab: error: "), proc.stderr
    for f in fragments:
        assert f in lines[0], lines[0]
