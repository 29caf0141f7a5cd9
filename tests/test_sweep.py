"""Sweeps: grid parsing, the local backend (finished runs reused), and the Ray backend on a local Ray."""
import json
import sys

import pytest

from conftest import run_cli
from normlab import cli, study
from normlab.config import TrainConfig
from normlab.errors import NormlabError
from normlab.sweeps import expand, parse_grid, sweep

RUN_FILES = {".normlab-run", "misclassified.json", "config.json", "metrics.jsonl", "results.json", "model.safetensors", "curves.png",
             "misclassified.png", "confusion.png", "confusion_matrix.json"}
TINY = ["--train-size", "200", "--val-size", "200", "--epochs", "1", "--batch-size", "50", "--precision", "fp32",
        "--no-progress"]


def test_grid_expands_to_one_named_folder_per_combination(tmp_path):
    grid = parse_grid(["norms=bn,gn", "seeds=0,1", "lrs=0.05", "batch-sizes=64"])
    assert grid == {"norm": ["bn", "gn"], "seed": [0, 1], "lr": [0.05], "batch_size": [64]}
    configs = expand(TrainConfig(), grid, tmp_path)
    assert [(c.config.norm, c.config.seed) for c in configs] == [("bn", 0), ("bn", 1), ("gn", 0), ("gn", 1)]
    assert [str(c.out) for c in configs][:2] == [str(tmp_path / "s8-bn-reference-bs64-lr0.05-seed0"),
                                            str(tmp_path / "s8-bn-reference-bs64-lr0.05-seed1")]
    # Without batch-sizes/lrs in the grid the names carry the recipe's values.
    assert expand(TrainConfig(), parse_grid(["recipes=reference-decay"]), tmp_path)[0].out.name.endswith(
        "s8-bn-reference-decay-bs128-lr0.05-seed0")


@pytest.mark.parametrize("items, message", [
    (["colours=red"], "expected KEY=V1,V2,... with KEY one of"),
    (["norms"], "expected KEY=V1,V2,..."),
    (["norms=bn", "norms=gn"], "norms is given twice"),
    (["seeds=a,b"], "is not a comma-separated list of ints"),
    (["norms=bn,xx"], "unknown norm 'xx'"),
    (["archs=s9"], "unknown arch 's9'"),
    (["recipes=nosuch"], "unknown recipe 'nosuch'"),
    (["batch-sizes=0"], "batch_size must be at least 1"),
    (["lrs=-1"], "lr must be positive"),
    (["seeds=1,1"], "repeated values"),
])
def test_bad_grids_are_one_line_errors(tmp_path, items, message):
    with pytest.raises(NormlabError, match=message):
        expand(TrainConfig(), parse_grid(items), tmp_path)


def test_bad_grid_on_the_command_line_exits_2(tmp_path, capsys):
    assert cli.main(["sweep", "--grid", "norms=bn,xx", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("normlab: error: unknown norm 'xx'") and err.count("\n") == 1


def test_missing_ray_says_what_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(NormlabError, match=r"pip install 'normlab\[ray\]'"):
        sweep(TrainConfig(), {"norm": ["gn"]}, tmp_path, backend="ray", log=lambda *_: None)
    assert cli.main(["sweep", "--grid", "norms=gn", "--backend", "ray", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err == "normlab: error: the ray backend needs Ray: pip install 'normlab[ray]'\n"
    assert not list(tmp_path.glob("*/results.json"))


def test_local_sweep_writes_run_folders_and_reuses_finished_runs(real_data_dir, tmp_path, monkeypatch):
    base = TrainConfig(train_size=200, val_size=200, epochs=1, batch_size=50, precision="fp32", progress=False,
                       data_dir=str(real_data_dir))
    grid = {"norm": ["gn", "ln"], "seed": [0]}
    results = sweep(base, grid, tmp_path, log=lambda *_: None)
    assert [(r["norm"], r["seed"]) for r in results] == [("gn", 0), ("ln", 0)]
    for name in ("s8-gn-reference-bs50-lr0.01-seed0", "s8-ln-reference-bs50-lr0.01-seed0"):
        assert {p.name for p in (tmp_path / name).iterdir()} == RUN_FILES
    report = (tmp_path / "report.md").read_text()
    assert "| [s8-gn-reference-bs50-lr0.01-seed0]" in report
    assert "| val acc | best val acc |" in report and "test" not in report  # validation-split runs
    assert set(json.loads((tmp_path / "sweep.json").read_text())["runs"]) == {
        "s8-gn-reference-bs50-lr0.01-seed0", "s8-ln-reference-bs50-lr0.01-seed0"}

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(study, "train", no_training)
    logs = []
    assert sweep(base, grid, tmp_path, log=logs.append) == results
    assert any(line.startswith("reused 2 finished run(s)") for line in logs)


def test_ray_sweep_on_a_local_ray(real_data_dir, tmp_path):
    pytest.importorskip("ray")
    # In a subprocess, so that a stuck Ray ends with the timeout; the sweep starts and stops its own Ray.
    args = ["sweep", "--grid", "norms=gn,ln", "seeds=0", "--backend", "ray", "--cpus-per-task", "1", *TINY,
            "--data-dir", real_data_dir, "--out", tmp_path]
    p = run_cli(*args, timeout=900)  # a hang guard: Ray starts slowly on a busy 2-core machine
    assert p.returncode == 0, p.stderr[-3000:]
    assert "ray backend" in p.stdout and "done: 2 runs" in p.stdout
    names = ["s8-gn-reference-bs50-lr0.01-seed0", "s8-ln-reference-bs50-lr0.01-seed0"]
    for name in names:
        assert {f.name for f in (tmp_path / name).iterdir()} == RUN_FILES  # what `normlab train` writes
        r = json.loads((tmp_path / name / "results.json").read_text())
        assert r["threads"] == 1 and r["train_size"] == 200
    assert (tmp_path / "report.md").is_file()

    again = run_cli(*args, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"reused 2 finished run(s): {', '.join(names)}" in again.stdout
    assert "finished s8-" not in again.stdout  # nothing trained


def test_a_ray_worker_that_dies_is_a_one_line_error_that_says_how_to_resume(tmp_path, monkeypatch):
    """A worker process killed mid-run (out of memory, SIGKILL, or paused past Ray's keepalive) surfaces as
    a RayError that is not a RayTaskError; it must not escape as a traceback. A stand-in for Ray's API."""
    import types

    from normlab.sweeps import run_on_ray

    class RayError(Exception):
        pass

    class RayTaskError(RayError):
        pass

    class WorkerCrashedError(RayError):
        pass

    cancelled = []
    fake = types.SimpleNamespace(
        exceptions=types.SimpleNamespace(RayError=RayError, RayTaskError=RayTaskError),
        is_initialized=lambda: True, shutdown=lambda: None, cancel=cancelled.append,
        remote=lambda **_: lambda fn: types.SimpleNamespace(remote=lambda spec: spec.out.name),
        wait=lambda refs, num_returns: (refs[:1], refs[1:]))

    def get(ref):
        raise WorkerCrashedError("The worker died unexpectedly while executing this task.")

    fake.get = get
    monkeypatch.setitem(sys.modules, "ray", fake)
    configs = expand(TrainConfig(), parse_grid(["norms=bn,gn"]), tmp_path)
    with pytest.raises(NormlabError) as info:
        run_on_ray(configs, False, None, 1, 0, log=lambda *_: None)
    message = str(info.value)
    assert message.startswith(f"{configs[0].out.name}: its Ray worker died (WorkerCrashedError")
    assert "run the same command again to resume" in message and "\n" not in message
    assert cancelled == [configs[1].out.name]  # the other run is stopped, not left behind
