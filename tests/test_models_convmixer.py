"""The ConvMixer-style net: budget, norms from the factory, and its shape."""
import pytest
import torch

from normlab import build_model, count_params
from normlab.norms import GroupNorm, get_norm_layer
from normlab.summary import forward_macs


@pytest.mark.parametrize("norm, kind", [("bn", torch.nn.BatchNorm2d), ("gn", GroupNorm), ("ln", GroupNorm)])
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


@pytest.mark.parametrize("norm", ["bn", "gn", "ln"])
def test_ws_variant_same_parameters_standardized_embed_and_pointwise(norm):
    from normlab.models.common import WSConv2d

    plain, ws = build_model("convmixer", norm), build_model("convmixer-ws", norm)
    assert count_params(ws) == count_params(plain) == 45_898
    assert ws.state_dict().keys() == plain.state_dict().keys()  # weights load either way
    convs = [m for m in ws.modules() if isinstance(m, torch.nn.Conv2d)]
    standardized = [m for m in convs if isinstance(m, WSConv2d)]
    assert len(standardized) == 1 + 9  # the embedding and every pointwise conv
    assert all(m.groups == m.in_channels for m in convs if not isinstance(m, WSConv2d))  # depthwise stay plain
    ws.load_state_dict(plain.state_dict())
    x = torch.rand(2, 3, 32, 32)
    assert not torch.allclose(ws.eval()(x), plain.eval()(x))  # the standardization is applied


@pytest.mark.parametrize("norm", ["bn", "gn", "ln"])
def test_full_resolution_stem_option(norm):
    model = build_model("convmixer-s16", norm)
    assert count_params(model) == 49_690 <= 50_000  # 45,898 - 768 + 432 + 32 + 4,096
    first = model.embed[0]
    assert first.kernel_size == (3, 3) and first.out_channels == 16 and first.stride == (1, 1)
    assert model.embed(torch.rand(1, 3, 32, 32)).shape == (1, 64, 16, 16)
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("norm", ["bn", "gn", "ln"])
def test_pointwise_residual_variant(norm):
    plain, res = build_model("convmixer-s16", norm), build_model("convmixer-s16-res", norm)
    assert count_params(res) == count_params(plain) == 49_690
    assert round(forward_macs(res) / 1e6, 1) == round(forward_macs(plain) / 1e6, 1)
    # the same weights, moved under Residual: copying them over makes the nets differ only by the skips
    weights = dict(zip(res.state_dict(), plain.state_dict().values()))
    res.load_state_dict(weights)
    res.eval(), plain.eval()
    x = torch.rand(2, 3, 32, 32)
    pointwise = res.blocks[0][1]
    assert pointwise(res.blocks[0][0](res.embed(x))).shape == (2, 64, 16, 16)
    assert not torch.allclose(res(x), plain(x))
    for block in res.blocks:  # no skip left: the plain net again
        block[1].forward = block[1].body.forward
    assert torch.allclose(res(x), plain(x), atol=1e-5)


@pytest.mark.parametrize("norm", ["bn", "gn", "ln"])
def test_full_resolution_stage(norm):
    model = build_model("convmixer-fr32", norm)
    # stem 864 + 64, one width-32 block 288 + 64 + 1,024 + 64, 1x1 conv 2,048 + 128, 9 blocks, head 650
    assert count_params(model) == 49_546 <= 50_000
    x = torch.rand(2, 3, 32, 32)
    full_res = model.embed[:4](x)  # stem conv, ReLU, norm, the mixer block
    assert full_res.shape == (2, 32, 32, 32)
    depthwise = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.groups == m.in_channels > 1]
    assert [m.in_channels for m in depthwise] == [32] + [64] * 9
    assert not any(m.stride != (1, 1) for m in model.modules() if isinstance(m, torch.nn.Conv2d))  # pooling only
    assert model.embed(x).shape == (2, 64, 16, 16)
    assert model(x).shape == (2, 10)
    # the default nets keep their layer names (and so their pretrained weights' keys)
    assert "embed.3.weight" in build_model("convmixer-s16", norm).state_dict()


def test_gelu_variant_swaps_every_relu_and_nothing_else():
    relu, gelu = build_model("convmixer-fr32", "ln"), build_model("convmixer-fr32-gelu", "ln")
    assert count_params(gelu) == count_params(relu) and gelu.state_dict().keys() == relu.state_dict().keys()
    kinds = lambda m: [type(x).__name__ for x in m.modules()]  # noqa: E731
    assert "ReLU" not in kinds(gelu) and kinds(gelu).count("GELU") == kinds(relu).count("ReLU") > 0
    assert [k.replace("GELU", "ReLU") for k in kinds(gelu)] == kinds(relu)
    assert gelu(torch.rand(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("norm", ["bn", "gn", "ln"])
def test_deeper_narrower_variant(norm):
    model = build_model("convmixer-fr32-d10", norm)
    # convmixer-fr32's stem stage (2,368), 1x1 conv 32->60 1,920 + 120, 10 blocks of 60^2 + 13 * 60, head 610
    assert count_params(model) == 48_818 <= 50_000
    depthwise = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.groups == m.in_channels > 1]
    assert [m.in_channels for m in depthwise] == [32] + [60] * 10
    if norm == "gn":  # 60 channels: 6 groups of 10, the nearest split to 8 channels per group
        assert {m.num_groups for m in model.blocks.modules() if isinstance(m, torch.nn.GroupNorm)} == {6}
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def _block_sizes(model) -> list[int]:
    """The side of the feature map after each entry of ``model.blocks``, for a 32x32 input."""
    h = model.embed(torch.rand(2, 3, 32, 32))
    sizes = []
    for layer in model.blocks:
        h = layer(h)
        sizes.append(h.shape[-1])
    return sizes


@pytest.mark.parametrize("norm", ["bn", "gn", "ln"])
def test_high_resolution_variant_runs_two_width_64_blocks_at_32x32(norm):
    model = build_model("convmixer-hr2", norm)
    # stem 3x3 3->32 864 + 64, 1x1 32->64 2,048 + 128, 9 blocks of 64^2 + 13 * 64, head 650
    assert count_params(model) == 48_106 <= 50_000
    x = torch.rand(2, 3, 32, 32)
    assert model.embed(x).shape == (2, 64, 32, 32)
    assert _block_sizes(model) == [32, 32] + [16] * 8  # two blocks, the max-pool, seven blocks
    assert not any(m.stride != (1, 1) for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert model(x).shape == (2, 10)


@pytest.mark.parametrize("norm", ["bn", "gn", "ln"])
def test_high_resolution_variant_with_a_wider_stem_fits_the_budget(norm):
    model = build_model("convmixer-hr2-s48", norm)
    # convmixer-hr2 (48,106) with stem 48: 3x3 3->48 1,296 + 96, 1x1 48->64 3,072 (instead of 864 + 64, 2,048)
    assert count_params(model) == 49_594 <= 50_000
    assert model.embed[0].out_channels == 48
    if norm == "gn":  # 48 channels: 6 groups of 8
        assert model.embed[2].num_groups == 6
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_high_resolution_blocks_must_leave_blocks_after_the_pool():
    from normlab.models.convmixer import ConvMixer
    with pytest.raises(ValueError, match="hr_blocks"):
        ConvMixer(get_norm_layer("bn"), stem=32, hr_blocks=9)


@pytest.mark.parametrize("norm", ["bn", "gn", "ln"])
def test_three_block_high_resolution_variant_has_hr2s_parameters(norm):
    model = build_model("convmixer-hr3", norm)
    assert count_params(model) == 48_106 == count_params(build_model("convmixer-hr2", norm))
    assert _block_sizes(model) == [32, 32, 32] + [16] * 7  # three blocks, the max-pool, six blocks
