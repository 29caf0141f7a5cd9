import io
import os
import pickle
import tarfile

import numpy as np
import pytest

from normlab import data
from normlab.errors import NormlabError

from conftest import write_batch, write_dataset


@pytest.mark.parametrize("bytes_keys", [False, True])
def test_reads_both_pickle_key_styles(tmp_path, bytes_keys):
    write_batch(tmp_path / "b", 20, bytes_keys=bytes_keys)
    x, y = data.read_batch(tmp_path / "b", rows=20)
    assert x.shape == (20, 3, 32, 32) and x.dtype == np.uint8
    assert y.shape == (20,) and 0 <= y.min() and y.max() <= 9


def test_pixel_layout_is_planar_rgb(tmp_path):
    raw = np.zeros((2, 3072), dtype=np.uint8)
    raw[0, :1024] = 255  # red plane of image 0
    raw[1, 2048:] = 7    # blue plane of image 1
    write_batch(tmp_path / "b", 2, data=raw, labels=[0, 1])
    x, _ = data.read_batch(tmp_path / "b", rows=2)
    assert (x[0, 0] == 255).all() and (x[0, 1:] == 0).all()
    assert (x[1, 2] == 7).all() and (x[1, :2] == 0).all()


def test_missing_file_names_it(tmp_path):
    with pytest.raises(NormlabError, match="data_batch_9: file not found"):
        data.read_batch(tmp_path / "data_batch_9")


def test_truncated_file(tmp_path):
    write_batch(tmp_path / "b", 20)
    raw = (tmp_path / "b").read_bytes()
    (tmp_path / "b").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(NormlabError, match="not a readable CIFAR-10 pickle"):
        data.read_batch(tmp_path / "b", rows=20)


def test_garbage_file(tmp_path):
    (tmp_path / "b").write_bytes(b"this is not a pickle at all")
    with pytest.raises(NormlabError, match="b: not a readable CIFAR-10 pickle"):
        data.read_batch(tmp_path / "b", rows=20)


@pytest.mark.parametrize("data_arr, labels, message", [
    (np.zeros((19, 3072), np.uint8), [0] * 19, r"shape \(19, 3072\), expected \(20, 3072\)"),
    (np.zeros((20, 3072), np.float32), [0] * 20, "must be a uint8 array"),
    (np.zeros((20, 3072), np.uint8), [0] * 19 + [10], "labels must lie in 0..9"),
    (np.zeros((20, 3072), np.uint8), [0] * 18, "'labels' must be 20 integers"),
])
def test_bad_structure(tmp_path, data_arr, labels, message):
    write_batch(tmp_path / "b", 20, data=data_arr, labels=labels)
    with pytest.raises(NormlabError, match=message):
        data.read_batch(tmp_path / "b", rows=20)


def test_restricted_unpickler_refuses_code(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (tmp_path / "b").write_bytes(pickle.dumps({"data": Evil(), "labels": []}, protocol=2))
    with pytest.raises(NormlabError, match="forbidden global"):
        data.read_batch(tmp_path / "b", rows=20)
    assert not marker.exists()


@pytest.mark.parametrize("bytes_keys", [False, True])
def test_load_full_layout(tmp_path, monkeypatch, bytes_keys):
    monkeypatch.setattr(data, "ROWS_PER_BATCH", 10)
    write_dataset(tmp_path / "cifar-10-batches-py", 10, bytes_keys=bytes_keys)
    d = data.load_cifar10(tmp_path, download_missing=False)
    assert d.train_x.shape == (50, 3, 32, 32) and d.test_x.shape == (10, 3, 32, 32)
    assert d.train_x.dtype.is_floating_point is False and d.train_y.dtype.is_signed
    assert d.classes[0] == "airplane" and d.classes[9] == "truck"


def test_env_var_and_missing_data(tmp_path, monkeypatch):
    monkeypatch.setenv("NORMLAB_DATA", str(tmp_path / "nowhere"))
    assert data.resolve_data_dir() == tmp_path / "nowhere"
    with pytest.raises(NormlabError, match="no CIFAR-10 in .*nowhere"):
        data.find(download_missing=False)


def _tar_with(path, members: dict[str, bytes], link: tuple[str, str] | None = None):
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
        if link:
            info = tarfile.TarInfo(link[0])
            info.type = tarfile.SYMTYPE
            info.linkname = link[1]
            tar.addfile(info)


@pytest.mark.parametrize("name", ["../evil.txt", "/tmp/evil-abs.txt", "cifar-10-batches-py/../../evil.txt"])
def test_unsafe_archive_members_are_refused(tmp_path, name):
    archive = tmp_path / "a.tar.gz"
    _tar_with(archive, {"cifar-10-batches-py/ok.txt": b"ok", name: b"evil"})
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(NormlabError, match="unsafe member"):
        data.safe_extract(archive, dest)
    assert not (tmp_path / "evil.txt").exists() and not list(dest.iterdir())


def test_links_in_archive_are_refused(tmp_path):
    archive = tmp_path / "a.tar.gz"
    _tar_with(archive, {"x/ok.txt": b"ok"}, link=("x/link", "/etc/passwd"))
    with pytest.raises(NormlabError, match="not a plain file"):
        data.safe_extract(archive, tmp_path / "dest")


def test_safe_archive_extracts(tmp_path):
    archive = tmp_path / "a.tar.gz"
    _tar_with(archive, {"cifar-10-batches-py/ok.txt": b"ok"})
    data.safe_extract(archive, tmp_path / "dest")
    assert (tmp_path / "dest/cifar-10-batches-py/ok.txt").read_bytes() == b"ok"


def test_archive_with_wrong_md5_is_refused(tmp_path):
    _tar_with(tmp_path / data.ARCHIVE, {"cifar-10-batches-py/ok.txt": b"ok"})
    with pytest.raises(NormlabError, match="MD5 does not match"):
        data.find(tmp_path, download_missing=False)


def test_real_data_loads(real_data_dir):
    d = data.load_cifar10(real_data_dir, download_missing=False)
    assert d.train_x.shape == (50_000, 3, 32, 32) and d.test_x.shape == (10_000, 3, 32, 32)
    assert (d.train_y.bincount() == 5000).all() and (d.test_y.bincount() == 1000).all()
    mean = d.train_x.float().mean((0, 2, 3)) / 255
    assert abs(float(mean[0]) - 0.4914) < 1e-3
