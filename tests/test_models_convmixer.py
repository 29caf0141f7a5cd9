"""The ConvMixer-style net: budget, norms from the factory, and its shape."""
import pytest
import torch

from normlab import build_model, count_params
from normlab.norms import GroupNorm
from normlab.summary import forward_macs


@pytest.mark.parametrize("norm, kind", [("bn", torch.nn.BatchNorm2d), ("gn", GroupNorm), ("ln", torch.nn.GroupNorm)])
def test_budget_norms_and_output(norm, kind):
    model = build_model("convmixer", norm)
    assert count_params(model) == 45_898 <= 50_000
    norms = [m for m in model.modules() if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.GroupNorm))]
    assert len(norms) == 1 + 2 * 9 and all(type(m) is kind for m in norms)  # embed + 2 per block
    if norm != "bn":
        assert {m.num_groups for m in norms} == ({8} if norm == "gn" else {1})
    assert model(torch.rand(3, 3, 32, 32)).shape == (3, 10)


def test_depthwise_blocks_at_one_resolution():
    model = build_model("convmixer", "bn")
    depthwise = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.groups == m.in_channels > 1]
    assert len(depthwise) == 9 and all(m.kernel_size == (3, 3) for m in depthwise)
    assert model.embed(torch.rand(1, 3, 32, 32)).shape == (1, 64, 16, 16)
    assert round(forward_macs(model) / 1e6, 1) == 11.0
