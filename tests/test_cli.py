"""The command line as users run it: a subprocess, its output and exit code."""
import json

import pytest
from PIL import Image

from conftest import assert_one_line_error as _one_line_error, run_cli


def test_help_and_version():
    proc = run_cli("--help")
    assert proc.returncode == 0
    for cmd in ["train", "compare", "evaluate", "predict", "summary"]:
        assert cmd in proc.stdout
    for variable in ["NORMLAB_DATA", "NORMLAB_OFFLINE", "NORMLAB_COMPILE", "NORMLAB_MALLOC"]:  # as in docs/cli.md
        assert variable in proc.stdout
    assert run_cli("--version").stdout.startswith("normlab ")


def test_summary_table():
    proc = run_cli("summary", "--arch", "s8", "--norm", "gn")
    assert proc.returncode == 0
    assert "total parameters: 48,096" in proc.stdout
    assert "multiply-adds per 32x32 image (forward, convs and linears): 16.00 M" in proc.stdout
    assert "GroupNorm" in proc.stdout and "global" in proc.stdout and "44x44" in proc.stdout


def test_recipes_lists_presets_and_shows_one_with_overrides():
    from normlab.recipes import RECIPES

    listing = run_cli("recipes")
    assert listing.returncode == 0
    names = [line.split()[0] for line in listing.stdout.splitlines() if line and not line.startswith((" ", "("))]
    assert names == list(RECIPES)
    from normlab.recipes import all_recipes

    everything = run_cli("recipes", "--all")
    assert [line.split()[0] for line in everything.stdout.splitlines() if line and not line.startswith(" ")] == list(
        all_recipes())
    shown = run_cli("recipes", "fast-muon", "--set", "muon_scope=convs", "--set", "lr=0.1")
    assert shown.returncode == 0
    rows = dict(line.split() for line in shown.stdout.splitlines() if line.startswith("  "))
    assert rows["optimizer"] == "muon" and rows["muon_scope"] == "convs" and rows["lr"] == "0.1"
    assert rows["batch_size"] == "256" and "with muon_scope=convs, lr=0.1:" in shown.stdout


@pytest.mark.parametrize("args, fragments", [
    (["recipes", "magic"], ["unknown recipe 'magic'"]),
    (["recipes", "--set", "lr=0.1"], ["needs a recipe name"]),
    (["recipes", "fast", "--set", "optimizer=lion"], ["unknown optimizer 'lion'"]),
    (["train", "--norm", "xn"], ["unknown norm 'xn'", "bn, gn, ln"]),
    (["train", "--arch", "s8-reference-ln", "--norm", "ln"], ["111,568 parameters", "--no-budget"]),
    (["train", "--epochs", "25"], ["25 epochs is over the 20-epoch budget"]),
    (["train", "--recipe", "magic"], ["unknown recipe 'magic'"]),
    (["train", "--precision", "fp8"], ["unknown precision 'fp8'"]),
    (["train", "--batch-size", "0"], ["batch_size must be at least 1", "--batch-size"]),
    (["compare", "--norms", "bn,xx"], ["unknown norm 'xx'"]),
    (["compare", "--seeds", "1,a"], ["--seeds"]),
    (["evaluate", "no/such/run"], ["no weights file here"]),
    (["train", "--set", "foo=1"], ["--set 'foo=1'", "KEY one of"]),
    (["train", "--set", "weight_decay=lots"], ["weight_decay takes a float"]),
    (["train", "--set", "schedule=zigzag"], ["unknown schedule 'zigzag'"]),
    (["train", "--set", "flip=maybe"], ["flip takes a bool"]),
    (["train", "--set", "ema_epochs=-1"], ["ema_epochs must be 0 or more (not negative), got -1.0"]),
    (["train", "--set", "ema_epochs=soon"], ["ema_epochs takes a float"]),
])
def test_bad_input_is_a_one_line_error(tmp_path, args, fragments):
    _one_line_error(run_cli(*args, cwd=tmp_path), *fragments)


def test_missing_data_is_a_one_line_error(tmp_path):
    proc = run_cli("train", "--data-dir", tmp_path / "empty", "--train-size", "10", cwd=tmp_path,
                   env_extra={"NORMLAB_OFFLINE": "1"})
    # Without the data and without a network the error must say where the data was looked for.
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "empty" in proc.stderr


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, real_data_dir):
    out = tmp_path_factory.mktemp("cli") / "run"
    proc = run_cli("train", "--norm", "ln", "--train-size", "512", "--epochs", "1",
                   "--data-dir", real_data_dir, "--out", out, "--no-progress", "--precision", "fp32")
    assert proc.returncode == 0, proc.stderr
    assert "img/s" in proc.stdout and "done:" in proc.stdout and "%  test " in proc.stdout
    return out


def test_finished_run_is_not_overwritten(tiny_run, real_data_dir):
    before = (tiny_run / "results.json").read_text()
    proc = run_cli("train", "--norm", "ln", "--train-size", "512", "--epochs", "1", "--data-dir", real_data_dir,
                   "--out", tiny_run, "--no-progress")
    _one_line_error(proc, "holds a finished run", "--overwrite")
    assert (tiny_run / "results.json").read_text() == before


def test_evaluate_matches_results(tiny_run, real_data_dir):
    proc = run_cli("evaluate", tiny_run, "--data-dir", real_data_dir, "--json", "--flip-tta")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["test_acc"] == json.loads((tiny_run / "results.json").read_text())["test_acc"]
    assert 0 <= out["test_acc_flip_tta"] <= 100
    assert len(out["confusion_matrix"]) == 10 and sum(map(sum, out["confusion_matrix"])) == 10_000


def test_evaluate_split_val_needs_a_validation_split_run(tiny_run, tmp_path):
    _one_line_error(run_cli("evaluate", tiny_run, "--split", "val"), "no --val-size", "--split test")
    _one_line_error(run_cli("evaluate", "--pretrained", "bn", "--split", "val"), "--split val needs the run folder",
                    "--split test")
    (tmp_path / "w.safetensors").write_bytes((tiny_run / "model.safetensors").read_bytes())
    _one_line_error(run_cli("evaluate", tmp_path / "w.safetensors", "--split", "val"), "no config.json")


def test_predict_any_size_image_and_refuse_non_images(tiny_run, tmp_path):
    Image.new("RGB", (100, 60), (200, 30, 30)).save(tmp_path / "red.png")
    proc = run_cli("predict", tiny_run, tmp_path / "red.png", "--top", "2")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(str(tmp_path / "red.png")) and proc.stdout.count("%") == 2
    (tmp_path / "notes.txt").write_text("not an image")
    _one_line_error(run_cli("predict", tiny_run, tmp_path / "notes.txt"), "notes.txt: not an image")
    _one_line_error(run_cli("predict", tiny_run, tmp_path / "missing.png"), "missing.png: file not found")


def test_compare_writes_report_and_reuses_finished_runs(tmp_path, real_data_dir):
    args = ["compare", "--norms", "bn,ln", "--seeds", "0", "--train-size", "256", "--val-size", "100",
            "--epochs", "1", "--data-dir", real_data_dir, "--out", tmp_path / "cmp", "--no-progress",
            "--set", "weight_decay=0.001"]
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    for name in ["report.md", "report.html", "curves.png", "s8-bn-seed0/results.json", "s8-ln-seed0/results.json"]:
        assert (tmp_path / "cmp" / name).is_file(), name
    report = (tmp_path / "cmp" / "report.md").read_text()
    assert "weight_decay=0.001" in report  # the report names --set changes
    # validation-split runs are judged on their held-out images alone: no test figure anywhere
    assert "| val acc |" in report and "test" not in report.replace("not on the test set", "")
    assert "bn seed 0: train" in first.stdout and "%  val " in first.stdout and "%  test" not in first.stdout
    # evaluate --split val re-checks a validation-split run on the same held-out images
    val = run_cli("evaluate", tmp_path / "cmp" / "s8-bn-seed0", "--split", "val", "--json", "--data-dir", real_data_dir)
    assert val.returncode == 0, val.stderr
    out = json.loads(val.stdout)
    assert out["val_acc"] == json.loads((tmp_path / "cmp" / "s8-bn-seed0" / "results.json").read_text())["val_acc"]
    assert sum(map(sum, out["confusion_matrix"])) == 100 and "test_acc" not in out
    again = run_cli(*args)
    assert again.returncode == 0, again.stderr
    assert "reused 2 finished run(s)" in again.stdout
    # --report-only reports what is finished (seed 0) and trains nothing (no seed 1 folders)
    only = run_cli(*[a if a != "0" else "0,1" for a in args], "--report-only")
    assert only.returncode == 0, only.stderr
    assert not (tmp_path / "cmp" / "s8-bn-seed1").exists()
    assert "s8-ln-seed0" in (tmp_path / "cmp" / "report.md").read_text()
    _one_line_error(run_cli(*[a if a != "0" else "7" for a in args], "--report-only"),
                    "no finished runs", "drop --report-only")


def test_batch_size_study(tmp_path, real_data_dir):
    proc = run_cli("study", "batch-size", "--norms", "gn", "--batch-sizes", "16,64", "--train-size", "256",
                   "--val-size", "100", "--epochs", "1", "--data-dir", real_data_dir, "--out", tmp_path / "bs",
                   "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "bs/batch_size.png").is_file() and (tmp_path / "bs/report.html").is_file()
    cfg = json.loads((tmp_path / "bs/s8-gn-bs16/config.json").read_text())
    assert cfg["recipe"]["batch_size"] == 16 and abs(cfg["recipe"]["lr"] - 0.01 * 16 / 128) < 1e-12
    _one_line_error(run_cli("study", "batch-size", "--batch-sizes", "0,4"), "--batch-sizes must be positive")
