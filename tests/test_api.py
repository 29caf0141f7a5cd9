"""The Python API as users call it: every function of normlab.api, on tiny runs of the real data."""
import json

import pytest
import torch

import normlab
from normlab.data import CLASSES
from normlab.errors import NormlabError

TINY = dict(train_size=256, epochs=1, precision="fp32", progress=False)


def quiet(*args, **kwargs):
    pass


@pytest.fixture(scope="module")
def data_dir(real_data_dir):
    return str(real_data_dir)


@pytest.fixture(scope="module")
def run(tmp_path_factory, data_dir):
    out = tmp_path_factory.mktemp("api") / "run"
    r = normlab.train(arch="s8", norm="gn", seed=1, out=str(out), data_dir=data_dir, log=quiet, **TINY)
    assert r["recipe_label"] == "reference" and r["norm"] == "gn" and r["params"] == 48_096
    return out


def test_the_api_is_the_package_surface():
    for name in ("train", "compare", "sweep", "study_batch_size", "evaluate", "predict", "report", "load_model",
                 "load_pretrained", "build_model", "count_params", "TrainConfig"):
        assert getattr(normlab, name) is getattr(normlab.api, name)


def test_train_takes_a_config_and_fields(tmp_path, data_dir):
    config = normlab.TrainConfig(norm="ln", data_dir=data_dir, **TINY)
    r = normlab.train(config, lr=0.05, out=str(tmp_path / "r"), log=quiet)
    assert r["lr"] == 0.05 and r["norm"] == "ln" and r["recipe_label"] == "reference"
    with pytest.raises(NormlabError, match="unknown training setting colour"):
        normlab.train(colour="red")


def test_train_records_the_label_of_what_was_changed(tmp_path, data_dir):
    r = normlab.train(recipe="fast", recipe_overrides={"label_smoothing": 0.0}, out=str(tmp_path / "r"),
                      data_dir=data_dir, log=quiet, **TINY)
    assert r["recipe_label"] == "fast label_smoothing=0.0"
    assert json.loads((tmp_path / "r" / "results.json").read_text())["recipe_label"] == r["recipe_label"]


def test_evaluate_and_load_model_agree_with_the_run(run, data_dir):
    recorded = json.loads((run / "results.json").read_text())["test_acc"]
    out = normlab.evaluate(run, data_dir=data_dir)
    assert out["test_acc"] == recorded and out["images"] == 10_000
    assert sum(map(sum, out["confusion_matrix"])) == 10_000
    assert normlab.evaluate(normlab.load_model(run), data_dir=data_dir)["test_acc"] == recorded
    with pytest.raises(NormlabError, match="not both"):
        normlab.evaluate(run, pretrained="bn")


def test_predict_images_and_tensors(run, tmp_path):
    from PIL import Image

    Image.new("RGB", (50, 40), (200, 30, 30)).save(tmp_path / "red.png")
    [top] = normlab.predict(run, [tmp_path / "red.png"], top=2)
    assert len(top) == 2 and top[0][1] >= top[1][1] and top[0][0] in CLASSES
    batch = torch.zeros(3, 3, 32, 32, dtype=torch.uint8)
    assert len(normlab.predict(normlab.build_model("s8", "bn"), batch)) == 3
    with pytest.raises(NormlabError, match="uint8 of shape"):
        normlab.predict(run, torch.zeros(2, 3, 16, 16, dtype=torch.uint8))


def test_compare_study_sweep_and_report(tmp_path, run, data_dir):
    results = normlab.compare(norms=("bn", "ln"), seeds=(0,), out=tmp_path / "cmp", data_dir=data_dir, log=quiet,
                              **TINY)
    assert [r["norm"] for r in results] == ["bn", "ln"] and (tmp_path / "cmp" / "report.md").is_file()
    study = normlab.study_batch_size(norms=("bn",), batch_sizes=(64, 128), out=tmp_path / "bs", data_dir=data_dir,
                                     log=quiet, **TINY)
    assert sorted(r["batch_size"] for r in study) == [64, 128]
    swept = normlab.sweep({"norms": ["bn"], "seed": [0, 1]}, out=tmp_path / "sw", data_dir=data_dir, log=quiet,
                          **TINY)
    assert [r["seed"] for r in swept] == [0, 1]
    reported = normlab.report([run, tmp_path / "cmp" / "s8-bn-seed0"], tmp_path / "rep", title="two runs")
    assert len(reported) == 2 and "# two runs" in (tmp_path / "rep" / "report.md").read_text()


def test_build_model_and_pretrained():
    assert normlab.count_params(normlab.build_model("s8", "ln")) == 48_096
    model = normlab.load_pretrained("bn")
    assert not model.training and model(torch.zeros(1, 3, 32, 32)).shape == (1, 10)
