"""The committed results: every run folder under results/ is finished, within budget, and its weights
reproduce its recorded test accuracy; so do the pretrained models packaged inside normlab."""
import json
import re
from pathlib import Path

import pytest
import torch

from normlab import count_params, load_model, load_pretrained, pretrained_card
from normlab.data import load_cifar10
from normlab.engine import evaluate
from normlab.norms import USER_NORMS
from normlab.pretrained import PACKAGED

ROOT = Path(__file__).resolve().parents[1]
RUNS = sorted(p.parent for p in (ROOT / "results").glob("*/*/results.json"))
PRETRAINED = [n for n in USER_NORMS if (PACKAGED / f"{n}.safetensors").is_file()]


@pytest.fixture(scope="module")
def data(real_data_dir):
    return load_cifar10(real_data_dir)


def _test_acc(model, data) -> float:
    return evaluate(model, data.test_x, data.test_y, torch.device("cpu"), "fp32")["acc"]


@pytest.mark.parametrize("run", RUNS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_committed_run_reproduces(run, data):
    results = json.loads((run / "results.json").read_text())
    model = load_model(run)
    assert count_params(model) == results["params"] <= 50_000
    assert results["epochs"] <= 20
    # float32 on the CPU is deterministic here; allow one image either way for other CPUs' kernels
    assert round(_test_acc(model, data), 2) == pytest.approx(results["test_acc"], abs=0.011)


@pytest.mark.parametrize("norm", PRETRAINED)
def test_pretrained_model_reproduces_its_card(norm, data):
    card = pretrained_card(norm)
    recorded = float(re.search(r"\| test accuracy \(single view, float32\) \| ([\d.]+)%", card).group(1))
    source = ROOT / re.search(r"\| source run \| `([^`]+)`", card).group(1)
    assert json.loads((source / "results.json").read_text())["test_acc"] == recorded  # the card is the run's
    model = load_pretrained(norm)
    assert count_params(model) <= 50_000
    assert round(_test_acc(model, data), 2) == pytest.approx(recorded, abs=0.011)
