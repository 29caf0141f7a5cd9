"""Data-parallel training under torchrun: two CPU processes over loopback (gloo) against one process."""
import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from conftest import run_cli
from normlab.models import build_model

# torchrun runs this script instead of `-m normlab`: the same CLI, with the model's dropout switched off
# (each rank draws its own dropout masks, so with dropout on the two runs could not match exactly), and
# rank 1 made to fail when the test asks for it.
LAUNCHER = """
import os, sys
import torch
from normlab import engine
from normlab.cli import main
from normlab.errors import NormlabError

build = engine.build_model
def build_without_dropout(*args, **kwargs):
    model = build(*args, **kwargs)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.dropout._DropoutNd):
            m.p = 0.0
    return model
engine.build_model = build_without_dropout

if os.environ.get("FAIL_RANK") == os.environ.get("RANK", "0"):
    def broken_epoch(*args, **kwargs):
        raise NormlabError("simulated failure on this rank")
    engine.train_epoch = broken_epoch
sys.exit(main(sys.argv[1:]))
"""

# 105 images in global batches of 64: the short last batch (41) splits 21/20 over two processes. Few steps:
# float32 rounding differences (summation order) grow with every step of training, whatever the launcher.
ARGS = ["train", "--norm", "gn", "--train-size", "105", "--val-size", "300", "--batch-size", "64", "--epochs", "2",
        "--lr", "0.05", "--precision", "fp32", "--device", "cpu", "--no-progress"]
TIMEOUT = 300


def _env(data_dir, **extra):
    # One thread per process, as torchrun's default, so both sides use the same float32 kernels.
    return dict(os.environ, NORMLAB_DATA=str(data_dir), NORMLAB_OFFLINE="1", OMP_NUM_THREADS="1", **extra)


def _torchrun(launcher, args, env):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           str(launcher), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=TIMEOUT)


@pytest.fixture
def launcher(tmp_path):
    path = tmp_path / "launch.py"
    path.write_text(LAUNCHER)
    return path


def test_two_processes_equal_one_process_with_the_same_global_batch(real_data_dir, tmp_path, launcher):
    env = _env(real_data_dir)
    one = subprocess.run([sys.executable, str(launcher), *ARGS, "--out", str(tmp_path / "one")],
                         capture_output=True, text=True, env=env, timeout=TIMEOUT)
    assert one.returncode == 0, one.stderr
    two = _torchrun(launcher, [*ARGS, "--out", str(tmp_path / "two")], env)
    assert two.returncode == 0, two.stderr[-3000:]
    assert "data-parallel over 2 processes (gloo): global batch 64, 32 per process" in two.stdout
    assert two.stdout.count("done:") == 1  # rank 0 alone reports

    # The same files, the same metrics and the same weights, up to float32 summation order.
    files = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "two").iterdir())
    assert "checkpoint.pt" not in files
    rows = [[json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
            for name in ("one", "two")]
    assert len(rows[0]) == len(rows[1]) == 2
    for a, b in zip(*rows):
        for key in ("train_loss", "val_loss"):
            assert b[key] == pytest.approx(a[key], rel=1e-5), key
        for key in ("train_acc", "val_acc", "lr"):
            assert b[key] == pytest.approx(a[key], abs=1e-6), key
    w1, w2 = load_file(tmp_path / "one" / "model.safetensors"), load_file(tmp_path / "two" / "model.safetensors")
    assert w1.keys() == w2.keys()
    torch.manual_seed(0)  # the runs' seed: their initial weights
    w0 = build_model("s8", "gn").state_dict()
    for k in w1:
        # Measured here: 7e-6 of the distance training moved the weights (one process with batch 32
        # instead of 64 ends 3x that distance away).
        moved = (w1[k] - w0[k]).norm()
        assert (w2[k] - w1[k]).norm() <= 1e-4 * moved + 1e-7, k
    r1 = json.loads((tmp_path / "one" / "results.json").read_text())
    r2 = json.loads((tmp_path / "two" / "results.json").read_text())
    assert r2.pop("processes") == 2
    assert set(r1) == set(r2)
    assert r2["val_acc"] == pytest.approx(r1["val_acc"], abs=0.05)


def test_a_failing_rank_ends_the_job_with_its_message(real_data_dir, tmp_path, launcher):
    p = _torchrun(launcher, [*ARGS, "--out", str(tmp_path / "run")], _env(real_data_dir, FAIL_RANK="1"))
    assert p.returncode != 0
    assert "normlab: error: rank 1/2: simulated failure on this rank" in p.stderr
    assert "Traceback" not in p.stderr.split("normlab: error: rank 1/2")[0]  # no Python traceback from normlab
    assert not (tmp_path / "run" / "results.json").exists()


def test_batch_not_divisible_by_processes_is_a_one_line_error(tmp_path):
    # torchrun's variables without torchrun: the check comes before any process group is joined.
    p = run_cli("train", "--batch-size", "63", "--train-size", "10", "--out", tmp_path / "run",
                env_extra={"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"}, timeout=120)
    assert p.returncode == 2
    assert p.stderr.strip() == ("normlab: error: rank 0/2: --batch-size 63 is the global batch and must divide "
                                "evenly over the 2 processes; pick a multiple of 2")
    assert not (tmp_path / "run").exists()


def test_only_train_runs_under_torchrun():
    p = run_cli("summary", env_extra={"WORLD_SIZE": "2", "RANK": "1"}, timeout=120)
    assert p.returncode == 2
    assert p.stderr.count("\n") == 1 and "torchrun runs `normlab train`" in p.stderr


def test_sync_bn_needs_cuda_on_more_than_one_process(monkeypatch):
    from normlab import distributed
    from normlab.errors import NormlabError
    from normlab.models import build_model

    ctx = distributed.Context(rank=0, world=2)
    with pytest.raises(NormlabError, match="--sync-bn needs CUDA"):
        ctx.wrap(build_model("s8", "bn"), torch.device("cpu"), sync_bn=True)
    model = build_model("s8", "bn")
    assert distributed.SINGLE.wrap(model, torch.device("cpu"), sync_bn=True) is model  # one process: nothing to sync


def test_shards_cover_the_global_batch_and_the_loss_scale_gives_its_mean():
    from normlab import distributed

    batch = torch.arange(41)
    shards = [distributed.Context(rank=r, world=2).shard(batch) for r in range(2)]
    assert [len(s) for s in shards] == [21, 20] and torch.equal(torch.cat(shards), batch)
    logits, y = torch.randn(41, 10), torch.randint(0, 10, (41,))
    mean = torch.nn.functional.cross_entropy(logits, y)
    # DDP averages the two ranks' gradients: the average of their scaled losses is the global mean.
    scaled = [distributed.Context(rank=r, world=2).batch_loss(logits[s], y[s], 41, 0.0)
              for r, s in enumerate([slice(0, 21), slice(21, 41)])]
    torch.testing.assert_close((scaled[0] + scaled[1]) / 2, mean)
