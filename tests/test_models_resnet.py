"""The residual family (resnet8, resnet8-ws, sepresnet8): budget, norms, weight standardization."""
import pytest
import torch

from normlab import build_model, count_params
from normlab.models.resnet import Residual, WSConv2d
from normlab.norms import GroupNorm


@pytest.mark.parametrize("arch, params", [("resnet8", 49_978), ("resnet8-ws", 49_978), ("sepresnet8", 49_642)])
@pytest.mark.parametrize("norm", ["bn", "gn", "ln"])
def test_exact_parameter_count_within_budget(arch, norm, params):
    model = build_model(arch, norm)
    assert count_params(model) == params <= 50_000
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("norm, kind", [("bn", torch.nn.BatchNorm2d), ("gn", GroupNorm), ("ln", GroupNorm)])
def test_norm_layers_come_from_the_factory(norm, kind):
    norms = [m for m in build_model("resnet8", norm).modules()
             if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.GroupNorm, torch.nn.LayerNorm))]
    assert len(norms) == 7 and all(type(m) is kind for m in norms)
    if norm == "gn":
        assert all(m.num_groups == m.num_channels // 8 for m in norms)  # 8 channels per group
    if norm == "ln":
        assert all(m.num_groups == 1 for m in norms)


def test_ws_variant_has_the_same_state_dict_and_only_ws_convs():
    plain, ws = build_model("resnet8", "gn"), build_model("resnet8-ws", "gn")
    assert {k: v.shape for k, v in plain.state_dict().items()} == {k: v.shape for k, v in ws.state_dict().items()}
    convs = [m for m in ws.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 7 and all(isinstance(m, WSConv2d) for m in convs)
    assert not any(isinstance(m, WSConv2d) for m in plain.modules())


def test_ws_conv_standardizes_each_output_kernel():
    torch.manual_seed(0)
    conv = WSConv2d(8, 4, 3, padding=1, bias=False)
    torch.nn.init.normal_(conv.weight, mean=0.3, std=2.0)
    w = conv.standardized_weight()
    torch.testing.assert_close(w.mean((1, 2, 3)), torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(w.var((1, 2, 3), unbiased=False), torch.ones(4), atol=1e-3, rtol=0)
    x = torch.randn(2, 8, 5, 5)
    torch.testing.assert_close(conv(x), torch.nn.functional.conv2d(x, w, padding=1))
    conv(x).sum().backward()
    assert conv.weight.grad is not None


@pytest.mark.parametrize("arch", ["resnet8", "sepresnet8"])
def test_residual_blocks_start_as_identity(arch):
    model = build_model(arch, "bn").eval()
    blocks = [m for m in model.modules() if isinstance(m, Residual)]
    assert blocks
    x = torch.randn(2, blocks[0].body[0][0].in_channels, 8, 8)
    torch.testing.assert_close(blocks[0](x), x)


def test_sep_variant_uses_depthwise_convs():
    convs = [m for m in build_model("sepresnet8", "bn").modules() if isinstance(m, torch.nn.Conv2d)]
    assert sum(m.groups == m.in_channels > 1 for m in convs) == 6


@pytest.mark.parametrize("arch, norm", [("resnet8", "bn"), ("resnet8-ws", "gn"), ("sepresnet8", "ln")])
def test_trains_in_bf16_channels_last(arch, norm):
    torch.manual_seed(0)
    model = build_model(arch, norm).to(memory_format=torch.channels_last)
    x = torch.rand(4, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = torch.nn.functional.cross_entropy(model(x).float(), torch.arange(4))
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in model.parameters())
