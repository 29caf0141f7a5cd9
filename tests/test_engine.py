"""Real (short) training runs on the real data."""
import json

import pytest
import torch

from normlab import TrainConfig, load_model, train
from normlab import data as data_module, devices, engine, evaluation, optim, weights
from normlab.data import load_cifar10
from normlab.errors import NormlabError
from normlab.runs import RunDir

IGNORED = {"seconds", "train_seconds", "images_per_second"}  # timings differ run to run


def _metrics(folder):
    return [{k: v for k, v in row.items() if k not in IGNORED} for row in RunDir(folder).metrics()]


def test_short_real_run_beats_chance(real_data_dir, tmp_path):
    r = train(TrainConfig(norm="bn", train_size=10_000, epochs=2, lr=0.05, data_dir=str(real_data_dir),
                          out=str(tmp_path / "run"), progress=False, precision="fp32"))
    assert r["test_acc"] > 30, r  # chance is 10%
    for name in ["config.json", "metrics.jsonl", "results.json", "model.safetensors", "curves.png",
                 "misclassified.png", "confusion.png"]:
        assert (tmp_path / "run" / name).is_file(), name
    assert not (tmp_path / "run" / "checkpoint.pt").exists()
    # The training compute: S8's 16.0 M multiply-adds per image, for 2 x 10,000 images.
    assert r["forward_macs"] == 16_003_392 and r["train_images_seen"] == 20_000
    assert r["train_macs"] == 20_000 * 16_003_392
    for key in ["arch", "norm", "recipe", "params", "epochs", "seed", "train_acc", "test_acc", "seconds",
                "images_per_second", "device", "precision"]:
        assert key in r
    # The saved weights reproduce the recorded test accuracy.
    data = load_cifar10(real_data_dir)
    model = load_model(tmp_path / "run")
    assert not model.training
    acc = evaluation.evaluate(model, data.test_x, data.test_y, torch.device("cpu"), "fp32")["acc"]
    assert round(acc, 2) == r["test_acc"]


def test_a_validation_split_run_never_touches_the_test_set(real_data_dir, tmp_path):
    """Choosing settings on a validation split means not looking at the test set at all: a run with
    --val-size trains and finishes with no test images to look at, and reports on its held-out images."""
    from dataclasses import replace

    data = replace(load_cifar10(real_data_dir), test_x=None, test_y=None)  # any use of them fails
    r = train(_quick(tmp_path, "val", epochs=1, train_size=512, val_size=300, recipe="fast"), data=data,
              log=lambda *_: None)
    assert not [k for k in r if "test" in k], r
    assert {"val_acc", "val_loss", "best_val_acc", "per_class_val_acc", "val_acc_flip_tta"} <= set(r)
    counts = json.loads((tmp_path / "val" / "confusion_matrix.json").read_text())
    assert counts["split"] == "val" and sum(map(sum, counts["counts"])) == 300
    assert (tmp_path / "val" / "misclassified.png").is_file()


def _quick(tmp_path, name, **kw):
    base = dict(norm="gn", train_size=1024, val_size=500, epochs=3, batch_size=64, out=str(tmp_path / name),
                progress=False, precision="fp32")
    base.update(kw)
    return TrainConfig(**base)


def _interrupt(monkeypatch, cfg, data, at_epoch):
    """Train ``cfg`` until a KeyboardInterrupt at the start of epoch ``at_epoch`` (0-based)."""
    real_epoch = engine.train_epoch

    def interrupted(*args, epoch, **kw):
        if epoch == at_epoch:
            raise KeyboardInterrupt
        return real_epoch(*args, epoch=epoch, **kw)

    monkeypatch.setattr(engine, "train_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, data=data, log=lambda *_: None)
    monkeypatch.setattr(engine, "train_epoch", real_epoch)
    assert RunDir(cfg.out).interrupted and len(RunDir(cfg.out).metrics()) == at_epoch


def test_same_seed_same_metrics_and_resume_equals_uninterrupted(real_data_dir, tmp_path, monkeypatch):
    data = load_cifar10(real_data_dir)
    train(_quick(tmp_path, "a"), data=data, log=lambda *_: None)
    train(_quick(tmp_path, "b"), data=data, log=lambda *_: None)
    assert _metrics(tmp_path / "a") == _metrics(tmp_path / "b")

    _interrupt(monkeypatch, _quick(tmp_path, "c"), data, at_epoch=2)

    with pytest.raises(NormlabError, match="interrupted run .2 epochs done.; pass --resume"):
        train(_quick(tmp_path, "c"), data=data, log=lambda *_: None)
    with pytest.raises(NormlabError, match="different settings .seed"):
        train(_quick(tmp_path, "c", seed=1, resume=True), data=data, log=lambda *_: None)
    # A run interrupted under an older normlab lacks the recipe fields added since: at their defaults
    # it still resumes; a new field set away from its default is a different setting.
    config = json.loads((tmp_path / "c/config.json").read_text())
    del config["recipe"]["muon_momentum"]
    (tmp_path / "c/config.json").write_text(json.dumps(config))
    with pytest.raises(NormlabError, match="different settings .recipe"):
        train(_quick(tmp_path, "c", resume=True, recipe_overrides={"muon_momentum": 0.9}), data=data,
              log=lambda *_: None)
    train(_quick(tmp_path, "c", resume=True), data=data, log=lambda *_: None)
    assert _metrics(tmp_path / "c") == _metrics(tmp_path / "a")
    ra = json.loads((tmp_path / "a/results.json").read_text())
    rc = json.loads((tmp_path / "c/results.json").read_text())
    assert ra["val_acc"] == rc["val_acc"] and ra["per_class_val_acc"] == rc["per_class_val_acc"]

    with pytest.raises(NormlabError, match="holds a finished run; pass --overwrite"):
        train(_quick(tmp_path, "c"), data=data, log=lambda *_: None)


def test_weight_average_is_an_exponential_average_of_every_step():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(),
                                torch.nn.LazyLinear(10))
    model(torch.randn(2, 3, 8, 8))
    average = optim.WeightAverage(model, ema_epochs=1.0, steps_per_epoch=10)  # decay 0.9 per step
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    expected = None
    for n in range(30):
        model(torch.randn(8, 3, 8, 8)).logsumexp(1).mean().backward()
        opt.step()
        opt.zero_grad()
        average.update()
        w = model[0].weight.detach()
        expected = w.clone() if expected is None else expected.lerp(w, 1 - min(0.9, (1 + n) / (10 + n)))
    torch.testing.assert_close(average.model[0].weight, expected)
    assert not torch.allclose(average.model[0].weight, model[0].weight)
    # Norm statistics are averaged too; step counters are copied.
    assert not torch.allclose(average.model[1].running_mean, model[1].running_mean)
    assert int(average.model[1].num_batches_tracked) == int(model[1].num_batches_tracked) == 31  # 1 + 30 steps


def test_weight_averaged_run_saves_the_average_and_resumes_exactly(real_data_dir, tmp_path, monkeypatch):
    data = load_cifar10(real_data_dir)
    ema = {"ema_epochs": 0.5}
    ra = train(_quick(tmp_path, "a", norm="bn", recipe_overrides=ema), data=data, log=lambda *_: None)
    rows = RunDir(tmp_path / "a").metrics()
    assert all("val_acc_raw" in row for row in rows)
    assert any(row["val_acc_raw"] != row["val_acc"] for row in rows)
    assert ra["val_acc_raw"] == round(rows[-1]["val_acc_raw"], 2)
    # The saved weights are the average: they reproduce val_acc; val_acc_raw is the raw weights'.
    model = load_model(tmp_path / "a")
    _, _, (_, val_x, val_y) = data_module.split(data, 1024, 500)
    assert round(evaluation.evaluate(model, val_x, val_y, torch.device("cpu"), "fp32")["acc"], 2) == ra["val_acc"]
    assert ra["val_acc"] == round(rows[-1]["val_acc"], 2)
    # The average is checkpointed: an interrupted run resumes to the same numbers.
    _interrupt(monkeypatch, _quick(tmp_path, "b", norm="bn", recipe_overrides=ema), data, at_epoch=1)
    rb = train(_quick(tmp_path, "b", norm="bn", recipe_overrides=ema, resume=True), data=data, log=lambda *_: None)
    assert _metrics(tmp_path / "b") == _metrics(tmp_path / "a")
    assert (rb["val_acc"], rb["val_acc_raw"]) == (ra["val_acc"], ra["val_acc_raw"])


def test_budget_guard(tmp_path):
    with pytest.raises(NormlabError, match="111,568 parameters, over the 50,000 budget; pass --no-budget"):
        train(TrainConfig(arch="s8-reference-ln", norm="ln", out=str(tmp_path / "x")))
    with pytest.raises(NormlabError, match="21 epochs is over the 20-epoch budget"):
        train(TrainConfig(epochs=21, out=str(tmp_path / "y")))
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_bf16_and_augmented_recipe_run(real_data_dir, tmp_path):
    if devices.resolve_precision("auto", torch.device("cpu")) != "bf16":
        pytest.skip("this CPU has no native bfloat16")
    cfg = _quick(tmp_path, "bf", norm="ln", precision="bf16", epochs=1, recipe="reference-decay",
                 recipe_overrides={"flip": True, "crop_pad": 2, "cutout": 8})
    data = load_cifar10(real_data_dir)
    r = train(cfg, log=lambda *_: None, data=data)
    assert r["precision"] == "bf16" and r["epochs"] == 1
    # Trained with flips: flip test-time augmentation is recorded, apart from the single-view figure, and
    # it is the saved model's on the held-out images. (After one epoch on 1,024 images the model may
    # still give every image the same class, so the two figures can be equal.)
    _, _, (_, x, y) = data_module.split(data, None, cfg.val_size)
    again = evaluation.evaluate(weights.load_model(cfg.out), x, y, torch.device("cpu"), "fp32", flip_tta=True)
    assert r["val_acc_flip_tta"] == round(again["acc_flip_tta"], 2) and r["val_acc"] == round(again["acc"], 2)


@pytest.mark.parametrize("native", [False, True])
def test_bf16_on_a_cpu_without_native_bfloat16_warns(real_data_dir, tmp_path, monkeypatch, capsys, native):
    monkeypatch.setattr(devices, "cpu_supports_bf16", lambda: native)
    assert devices.resolve_precision("auto", torch.device("cpu")) == ("bf16" if native else "fp32")
    cfg = _quick(tmp_path, "bf", norm="bn", precision="bf16", epochs=1, train_size=64, val_size=64)
    assert train(cfg, log=lambda *_: None)["precision"] == "bf16"  # warned, not refused
    err = capsys.readouterr().err
    assert ("no native bfloat16" in err and "use --precision fp32" in err) != native, err


def test_flip_tta_averages_an_image_and_its_mirror():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(10))
    x = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8)
    cpu = torch.device("cpu")
    plain = evaluation.predict_logits(model, x, cpu, "fp32")
    mirrored = evaluation.predict_logits(model, x.flip(3), cpu, "fp32")
    tta = evaluation.predict_logits(model, x, cpu, "fp32", batch_size=2, flip_tta=True)
    torch.testing.assert_close(tta, (plain + mirrored) / 2)
    assert not torch.allclose(plain, mirrored)
    # evaluate reports both from one pass: single-view logits and accuracy, and the flip-TTA accuracy.
    y = torch.tensor([0, 1, 2, 3, 4])
    r = evaluation.evaluate(model, x, y, cpu, "fp32", flip_tta=True)
    torch.testing.assert_close(r["logits"], plain)
    assert r["acc"] == 100.0 * float((plain.argmax(1) == y).float().mean())
    assert r["acc_flip_tta"] == 100.0 * float((tta.argmax(1) == y).float().mean())
    assert "acc_flip_tta" not in evaluation.evaluate(model, x, y, cpu, "fp32")


def test_recipe_overrides_from_set():
    from normlab.recipes import parse_settings

    over = parse_settings(["weight_decay=5e-4", "schedule=onecycle", "warmup-epochs=2", "flip=true", "crop_pad=4"])
    assert over == {"weight_decay": 5e-4, "schedule": "onecycle", "warmup_epochs": 2.0, "flip": True, "crop_pad": 4}
    cfg = TrainConfig(recipe="reference-decay", lr=0.1, recipe_overrides={**over, "lr": 0.2})
    r = cfg.get_recipe()
    assert (r.lr, r.weight_decay, r.schedule, r.flip, r.name) == (0.1, 5e-4, "onecycle", True, "reference-decay")


@pytest.mark.parametrize("mode", ["scale", "crop"])
def test_progressive_resizing_trains_small_first_and_counts_its_compute(real_data_dir, tmp_path, mode):
    from normlab.models import build_model
    from normlab.summary import forward_macs

    r = train(_quick(tmp_path, "small", epochs=2, recipe="fast",
                     recipe_overrides={"small_epochs": 1, "small_mode": mode},
                     data_dir=str(real_data_dir)), log=lambda *_: None)
    full, small = forward_macs(build_model("s8", "gn")), forward_macs(build_model("s8", "gn"), 16)
    assert 3.9 * small < full < 4 * small  # every conv but the head's 1x1 works on a quarter of the pixels
    assert r["train_images_seen"] == 2 * 1024 and r["train_macs"] == 1024 * (full + small)
    assert "small_epochs=1" in r["recipe_label"]
    assert ("small_mode=crop" in r["recipe_label"]) == (mode == "crop")


def test_a_middle_stage_trains_at_its_size_and_counts_its_compute(real_data_dir, tmp_path, monkeypatch):
    from normlab import engine
    from normlab.models import build_model
    from normlab.summary import forward_macs

    sizes = []

    def downscale(x, size):
        sizes.append(size)
        return real_downscale(x, size)

    real_downscale = engine.downscale
    monkeypatch.setattr(engine, "downscale", downscale)
    r = train(_quick(tmp_path, "mid", epochs=3, recipe="fast", recipe_overrides={"small_epochs": 1, "mid_epochs": 1},
                     data_dir=str(real_data_dir)), log=lambda *_: None)
    assert sizes == [16] * 16 + [24] * 16  # 16 steps of 64 images per epoch; the last epoch at full size
    model = build_model("s8", "gn")
    full, small, mid = forward_macs(model), forward_macs(model, 16), forward_macs(model, 24)
    assert small < mid < full and r["train_macs"] == 1024 * (full + small + mid)
    assert "mid_epochs=1" in r["recipe_label"]
