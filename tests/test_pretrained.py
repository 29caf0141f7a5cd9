"""Pretrained defaults: promoting a run, the model card, and the CLI's --pretrained."""
import json
import tomllib
from pathlib import Path

import pytest
from PIL import Image

from conftest import assert_one_line_error as _one_line_error, run_cli
from normlab.errors import NormlabError
from normlab.pretrained import ENV, load_pretrained, pretrained_card, promote


@pytest.fixture(scope="module")
def promoted(tmp_path_factory, real_data_dir):
    """A tiny resnet8-ln run (1 epoch, 512 images, tested), installed into a temporary pretrained folder."""
    from normlab.config import TrainConfig
    from normlab.engine import train

    base = tmp_path_factory.mktemp("pretrained")
    run = base / "run"
    train(TrainConfig(arch="resnet8", norm="ln", recipe="fast", epochs=1, train_size=512,
                      precision="fp32", data_dir=str(real_data_dir), out=str(run), progress=False),
          log=lambda *_: None)
    folder = base / "pretrained"
    path = promote(run, folder)
    assert path == folder / "ln.safetensors" and path.with_suffix(".md").is_file()
    return run, folder


def test_model_card_is_generated_from_run_data(promoted):
    run, folder = promoted
    results = json.loads((run / "results.json").read_text())
    card = pretrained_card("ln", folder)
    assert card.startswith("# Pretrained `ln` model: `resnet8`")
    for fragment in ["49,978", "`fast`", f"{results['test_acc']:.2f}%", "| seed | 0 |",
                     "| label_smoothing | 0.1 |", "| schedule | onecycle |", "images/s", "weights sha256",
                     results["torch"], "/ fp32 /"]:
        assert fragment in card, fragment


def test_a_validation_split_run_is_not_promoted(promoted, tmp_path):
    import shutil

    run, folder = promoted
    val_run = tmp_path / "val-run"
    shutil.copytree(run, val_run)
    results = json.loads((run / "results.json").read_text())
    results = {k: v for k, v in results.items() if not k.startswith(("test_", "per_class_test"))}
    (val_run / "results.json").write_text(json.dumps({**results, "val_size": 200, "val_acc": 30.0}))
    with pytest.raises(NormlabError, match="held out a validation split and was never tested"):
        promote(val_run, tmp_path / "dest")
    assert not (tmp_path / "dest" / "ln.safetensors").exists()


def test_model_card_names_the_recipe_label_the_run_recorded(promoted):
    from normlab.pretrained import model_card

    run, _ = promoted
    results = json.loads((run / "results.json").read_text())
    config = json.loads((run / "config.json").read_text())
    card = model_card({**results, "recipe_label": "fast optimizer=muon muon_lr=0.1"}, config, "run", "0" * 64)
    assert "| recipe | `fast` optimizer=muon muon_lr=0.1 |" in card
    assert "| recipe | `fast` |" in pretrained_card("ln", promoted[1])  # the preset as it is: name only


def test_load_pretrained_is_the_run_model(promoted):
    import torch

    from normlab import load_model

    run, folder = promoted
    model = load_pretrained("ln", folder)
    assert not model.training
    x = torch.rand(3, 3, 32, 32)
    torch.testing.assert_close(model(x), load_model(run)(x))


def test_cli_evaluate_and_predict_with_pretrained(promoted, real_data_dir, tmp_path):
    run, folder = promoted
    env = {ENV: str(folder)}
    proc = run_cli("evaluate", "--pretrained", "ln", "--data-dir", real_data_dir, "--json", env_extra=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["test_acc"] == json.loads((run / "results.json").read_text())["test_acc"]
    image = tmp_path / "cat.png"
    Image.new("RGB", (40, 30), (200, 120, 40)).save(image)
    proc = run_cli("predict", "--pretrained", "ln", image, image, "--top", "2", env_extra=env)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith(f"{image}: ") and line.count("%") == 2 for line in lines)


def test_missing_pretrained_weights_is_a_one_line_error(tmp_path):
    proc = run_cli("evaluate", "--pretrained", "gn", env_extra={ENV: str(tmp_path)})
    _one_line_error(proc, "no pretrained gn model is installed", "normlab train", "promote_pretrained.py")
    proc = run_cli("predict", "--pretrained", "bn", "x.png", env_extra={ENV: str(tmp_path)})
    _one_line_error(proc, "no pretrained bn model is installed")
    with pytest.raises(NormlabError, match="no pretrained ln model"):
        load_pretrained("ln", tmp_path)


@pytest.mark.parametrize("args, fragment", [
    (["evaluate"], "pass a run folder / .safetensors file, or --pretrained NORM"),
    (["evaluate", "some/run", "--pretrained", "bn"], "not both"),
    (["predict", "--pretrained", "bn", "."], "names another; pass one of them"),
    (["predict", "some/run"], "at least one image"),
    (["evaluate", "--pretrained", "xn"], "unknown norm 'xn' for --pretrained"),
])
def test_path_and_pretrained_are_exclusive(tmp_path, args, fragment):
    _one_line_error(run_cli(*args, cwd=tmp_path, env_extra={ENV: str(tmp_path)}), fragment)


def test_promote_refuses_unfinished_runs(tmp_path):
    with pytest.raises(NormlabError, match="not a finished run folder"):
        promote(tmp_path, tmp_path / "out")
    proc = run_cli_script("scripts/promote_pretrained.py", tmp_path, "--dest", tmp_path / "out")
    assert proc.returncode == 2 and "not a finished run folder" in proc.stderr and "Traceback" not in proc.stderr


def run_cli_script(script, *args):
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    return subprocess.run([sys.executable, str(root / script), *map(str, args)], capture_output=True, text=True)


def test_pretrained_files_are_package_data():
    root = Path(__file__).resolve().parents[1]
    data = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["normlab"]
    assert {"pretrained/*.safetensors", "pretrained/*.md"} <= set(data)
    assert (root / "src" / "normlab" / "pretrained").is_dir()


def test_model_card_gains_what_the_model_costs_after_training(promoted, tmp_path):
    run, _ = promoted
    export = tmp_path / "export"
    export.mkdir()
    (export / "export.json").write_text(json.dumps({
        "threads": 2, "cpu": "AMD EPYC", "files": {"model.onnx": {"bytes": 320_000, "test_acc": 89.64},
                                "model.int8.onnx": {"bytes": 210_000, "test_acc": 89.3}},
        "latency_ms": {"onnxruntime int8": {"1": 1.1, "256": 80.0}}}))
    rob = tmp_path / "robustness.json"
    rob.write_text(json.dumps({"models": {"pretrained-ln": {"clean_acc": 89.0, "mean_corruption_acc": 70.5,
                                                           "adapted": None}}}))
    folder = tmp_path / "dest"
    promote(run, folder, export=export, robustness=rob)
    card = pretrained_card("ln", folder)
    for fragment in ["## After training", "| exported `model.int8.onnx` | 205 KiB, test accuracy 89.30% |",
                     "1.10 ms at batch 1, 80.0 ms at batch 256 (2 threads of AMD EPYC)", "70.50% mean over 14 corruptions"]:
        assert fragment in card, fragment
    rob.write_text(json.dumps({"models": {"pretrained-bn": {}}}))
    with pytest.raises(NormlabError, match="no pretrained-ln entry"):
        promote(run, tmp_path / "dest2", robustness=rob)
    assert not (tmp_path / "dest2" / "ln.safetensors").exists()  # nothing installed
