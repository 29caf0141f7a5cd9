"""The output side as users hit it: normlab never loses a user's files, never lets two processes share a run
folder, keeps a finished run until its replacement has finished, and answers every bad input with one line
and exit 2 (never a traceback, never a NaN in a JSON file)."""
import json
import math
import os

import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st
from PIL import Image

from conftest import assert_one_line_error, run_cli
from normlab import cli
from normlab.errors import NormlabError
from normlab.recipes import Recipe, get_recipe, parse_settings
from normlab.runs import RunDir, atomic_write_json

TINY = ["--arch", "s8", "--norm", "bn", "--train-size", "256", "--epochs", "1", "--precision", "fp32",
        "--no-progress"]


@pytest.fixture
def tiny_run(tmp_path, real_data_dir):
    out = tmp_path / "run"
    proc = run_cli("train", *TINY, "--data-dir", real_data_dir, "--out", out)
    assert proc.returncode == 0, proc.stderr
    return out


def _user_folder(path):
    path.mkdir()
    (path / "notes.md").write_text("mine\n")
    (path / "data.json").write_text("{}\n")
    Image.new("RGB", (4, 4)).save(path / "photo.png")
    return {p.name: p.read_bytes() for p in path.iterdir()}


def _unchanged(path, before):
    assert {p.name: p.read_bytes() for p in path.iterdir()} == before


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_folder_that_is_not_a_run_is_never_written_into(tmp_path, overwrite, real_data_dir):
    before = _user_folder(tmp_path / "d")
    proc = run_cli("train", *TINY, "--out", tmp_path / "d", *(["--overwrite"] if overwrite else []),
                   "--data-dir", real_data_dir)
    assert_one_line_error(proc, "not a normlab run", "new or empty folder")
    _unchanged(tmp_path / "d", before)


def test_a_second_process_on_the_same_folder_is_refused(tmp_path, real_data_dir):
    with RunDir(tmp_path / "r").locked():
        proc = run_cli("train", *TINY, "--out", tmp_path / "r", "--data-dir", real_data_dir)
    assert_one_line_error(proc, "already being trained by another process", f"pid {os.getpid()}")
    assert not (tmp_path / "r").exists()


def test_overwrite_keeps_the_finished_run_until_the_new_one_finishes(tiny_run, tmp_path, real_data_dir):
    before = {p.name: p.read_bytes() for p in tiny_run.iterdir() if p.is_file()}
    proc = run_cli("train", *TINY, "--out", tiny_run, "--overwrite", "--lr", "1e30", "--data-dir", real_data_dir)
    assert_one_line_error(proc, "diverged")
    assert {p.name: p.read_bytes() for p in tiny_run.iterdir() if p.is_file()} == before
    assert sorted(p.name for p in tiny_run.parent.iterdir()) == [tiny_run.name]  # no half-written replacement
    # and a replacement that finishes takes its place, keeping files the user added beside the run
    (tiny_run / "notes.md").write_text("mine\n")
    proc = run_cli("train", *TINY, "--out", tiny_run, "--overwrite", "--seed", "3", "--data-dir", real_data_dir)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tiny_run / "results.json").read_text())["seed"] == 3
    assert (tiny_run / "notes.md").read_text() == "mine\n"
    assert not [p for p in tiny_run.parent.iterdir() if p.name.startswith(f".{tiny_run.name}.")]


@pytest.mark.parametrize("args, fragments", [
    (["train", "--set", "label_smoothing=1.5"], ["label_smoothing must be at least 0 and below 1"]),
    (["train", "--set", "crop_pad=40"], ["crop_pad must be between 0 and 16"]),
    (["train", "--set", "momentum=nan"], ["momentum must be a finite number"]),
    (["train", "--set", "momentum=1.5"], ["momentum must be at least 0 and below 1"]),
    (["train", "--set", "warmup_epochs=nan"], ["warmup_epochs must be a finite number"]),
    (["train", "--set", "ema_epochs=nan"], ["ema_epochs must be a finite number"]),
    (["train", "--lr", "inf"], ["lr must be a finite number"]),
    (["train", "--seed", "99999999999999999999"], ["--seed must be a whole number between 0 and"]),
    (["train", "--seed", "-1"], ["--seed must be a whole number between 0 and"]),
    (["sweep", "--grid", "seeds=0,99999999999999999999"], ["--seed must be a whole number between 0 and"]),
    (["train", "--val-size", "-5"], ["--val-size must be a whole number at least 0"]),
])
def test_bad_values_are_one_line_errors(tmp_path, args, fragments):
    assert_one_line_error(run_cli(*args, "--out", tmp_path / "x", cwd=tmp_path), *fragments)
    assert not (tmp_path / "x").exists()


def test_sweep_checks_every_run_before_training_any(tmp_path):
    proc = run_cli("sweep", "--grid", "archs=s8,s8-reference-ln", "norms=ln", "--out", tmp_path / "s", cwd=tmp_path)
    assert_one_line_error(proc, "111,568 parameters")
    assert not (tmp_path / "s").exists()


def test_unwritable_and_impossible_paths_are_one_line_errors(tmp_path, tiny_run):
    (tmp_path / "afile").write_text("x")
    assert_one_line_error(run_cli("train", *TINY, "--out", tmp_path / "afile" / "sub"), "afile")
    assert_one_line_error(run_cli("train", *TINY, "--out", tmp_path / "afile"), "is a file")
    assert_one_line_error(run_cli("report", tiny_run, "--out", tmp_path / "afile"), "afile", "in the way")


def test_corrupt_run_files_are_one_line_errors(tmp_path, tiny_run):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(tiny_run, bad)
    (bad / "results.json").write_text("[1]")
    assert_one_line_error(run_cli("report", bad, "--out", tmp_path / "rep"), "results.json", "expected a JSON object")
    (bad / "config.json").write_text("[1, 2, 3]")
    assert_one_line_error(run_cli("evaluate", bad, "--split", "val"), "config.json", "expected a JSON object")


def test_a_garbage_line_in_metrics_is_a_one_line_error(tmp_path, real_data_dir, monkeypatch):
    import normlab

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    run = tmp_path / "r"
    monkeypatch.setattr("normlab.engine.finish", interrupted)  # stopped after its last epoch's checkpoint
    with pytest.raises(KeyboardInterrupt):
        normlab.train(train_size=256, epochs=1, precision="fp32", progress=False, out=str(run),
                      data_dir=str(real_data_dir), log=lambda *a: None)
    with open(run / "metrics.jsonl", "a") as fh:
        fh.write("garbage{\n")
    proc = run_cli("train", *TINY, "--out", run, "--resume", "--data-dir", real_data_dir)
    assert_one_line_error(proc, "metrics.jsonl", "line 2 is not a JSON object")


def test_decompression_bombs_and_16_bit_images_in_predict(tmp_path):
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    bomb = tmp_path / "bomb.png"  # a valid header claiming 20000 x 20000 pixels, and no pixel data
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0))
                     + chunk(b"IEND", b""))
    from normlab.data import load_image

    with pytest.raises(NormlabError, match="too many to decode safely"):
        load_image(bomb)
    gray = tmp_path / "gray16.png"
    Image.fromarray(__import__("numpy").full((8, 8), 32768, dtype="uint16")).save(gray)
    assert int(load_image(gray).float().mean().round()) == 127  # mid-grey, not saturated white


def test_json_outputs_never_hold_nan(tmp_path):
    atomic_write_json(tmp_path / "x.json", {"loss": float("nan"), "rows": [float("inf"), 1.0]})
    assert json.loads((tmp_path / "x.json").read_text()) == {"loss": None, "rows": [None, 1.0]}


def test_weights_files_are_byte_reproducible(tmp_path):
    from normlab.models import build_model
    from normlab.weights import save_weights

    torch.manual_seed(0)
    model = build_model("s8", "gn")
    for name in ("a", "b"):
        save_weights(model, tmp_path / f"{name}.safetensors", "s8", "gn")
    blob = (tmp_path / "a.safetensors").read_bytes()
    assert blob == (tmp_path / "b.safetensors").read_bytes()
    header = json.loads(blob[8:8 + int.from_bytes(blob[:8], "little")])
    assert list(header["__metadata__"]) == sorted(header["__metadata__"])


def test_weights_that_do_not_fit_name_the_keys(tmp_path):
    from safetensors.torch import save_file

    from normlab.weights import load_model

    save_file({"layers.C1.0.weight": torch.zeros(3)}, str(tmp_path / "w.safetensors"),
              metadata={"arch": "s8", "norm": "bn"})
    with pytest.raises(NormlabError, match=r"missing \(e.g\. .*\).*unexpected|of another shape"):
        load_model(tmp_path / "w.safetensors")


# --- property-based: any recipe value either makes a valid recipe or is a one-line error ----------------
FIELDS = {k: v for k, v in Recipe.field_defaults().items()}
VALUES = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**30, 10**30), st.booleans(),
                   st.text(max_size=8))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.sampled_from(sorted(FIELDS)), value=VALUES)
def test_any_recipe_value_is_valid_or_a_one_line_error(key, value):
    try:
        recipe = get_recipe("fast", **{key: value})
    except NormlabError as exc:
        assert "\n" not in str(exc) and str(exc)
        return
    for v in recipe.to_dict().values():  # a recipe that exists is finite throughout and JSON-safe
        assert not (isinstance(v, float) and not math.isfinite(v))
    json.dumps(recipe.to_dict(), allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(key=st.sampled_from(sorted(FIELDS)), text=st.text(max_size=12))
def test_any_set_text_is_valid_or_a_one_line_error(key, text):
    try:
        get_recipe("reference", **parse_settings([f"{key}={text}"]))
    except NormlabError as exc:
        assert "\n" not in str(exc)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(args=st.lists(st.sampled_from(["--seed", "--epochs", "--batch-size", "--lr", "--train-size", "--val-size",
                                      "--norm", "--arch", "--recipe", "--precision", "--device", "1", "-3", "0",
                                      "nan", "1e400", "x", "bn", "s8"]), max_size=4))
def test_cli_arguments_never_give_a_traceback(args, capsys, monkeypatch):
    """Bad combinations of train options fail before touching data or files: exit 2, one line."""
    monkeypatch.setattr("normlab.engine.train", lambda spec, **kw: pytest.skip("valid"))  # never trains
    capsys.readouterr()
    try:
        code = cli.main(["train", *args, "--out", "/nonexistent/normlab-test"])
    except SystemExit as exc:  # argparse's own usage errors: exit 2 with its message
        assert exc.code == 2
        return
    except pytest.skip.Exception:
        return
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
