import pytest
import torch

from normlab import build_model, count_params
from normlab.errors import NormlabError
from normlab.norms import get_norm_layer


@pytest.mark.parametrize("norm", ["bn", "gn", "ln"])
def test_s8_has_the_reference_parameter_count(norm):
    model = build_model("s8", norm)
    assert count_params(model) == 48_096
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_reference_layer_norm_model_is_over_budget():
    model = build_model("s8-reference-ln", "ln")
    assert count_params(model) == 111_568
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_gn_uses_the_reference_groups():
    model = build_model("s8", "gn")
    groups = {name.split(".")[1]: m.num_groups for name, m in model.named_modules()
              if isinstance(m, torch.nn.GroupNorm)}
    assert groups == {"C1": 4, "C2": 4, "C4": 4, "C5": 8, "C6": 8, "C8": 4, "C9": 4, "C10": 4}


def test_input_normalization_is_buffers_not_parameters():
    model = build_model("s8", "bn")
    names = {n for n, _ in model.named_buffers()}
    assert {"normalize.mean", "normalize.std"} <= names
    assert not any(n.startswith("normalize") for n, _ in model.named_parameters())


def _first_sample_output(norm_layer, batch):
    norm_layer.train()
    return norm_layer(batch)[0]


@pytest.mark.parametrize("norm", ["gn", "ln"])
def test_gn_and_ln_do_not_look_at_other_samples(norm):
    torch.manual_seed(0)
    layer = get_norm_layer(norm)(32, groups=4)
    x = torch.randn(4, 32, 8, 8)
    other = torch.cat([x[:1], torch.randn(3, 32, 8, 8) * 5 + 3])
    torch.testing.assert_close(_first_sample_output(layer, x), _first_sample_output(layer, other))


def test_bn_in_train_mode_does_look_at_other_samples():
    torch.manual_seed(0)
    layer = get_norm_layer("bn")(32)
    x = torch.randn(4, 32, 8, 8)
    other = torch.cat([x[:1], torch.randn(3, 32, 8, 8) * 5 + 3])
    assert not torch.allclose(_first_sample_output(layer, x), _first_sample_output(layer, other))


def test_ln_normalizes_over_channels_and_space():
    layer = get_norm_layer("ln")(16)
    y = layer(torch.randn(3, 16, 5, 5) * 4 + 2)
    torch.testing.assert_close(y.mean((1, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var((1, 2, 3), unbiased=False), torch.ones(3), atol=1e-3, rtol=0)


@pytest.mark.parametrize("arch, norm, message", [
    ("s9", "bn", "unknown arch 's9'"),
    ("s8", "xn", "unknown norm 'xn'"),
    ("s8-reference-ln", "bn", "does not take norm 'bn'"),
])
def test_bad_names(arch, norm, message):
    with pytest.raises(NormlabError, match=message):
        build_model(arch, norm)


def test_group_count_must_divide_channels():
    with pytest.raises(NormlabError, match="do not split into 3 groups"):
        get_norm_layer("gn")(32, groups=3)


def test_groupnorm_bf16_channels_last_path_matches_the_plain_one():
    torch.manual_seed(0)
    layer = get_norm_layer("gn")(32, groups=4)
    torch.nn.init.uniform_(layer.weight)
    torch.nn.init.uniform_(layer.bias)
    x = torch.randn(4, 32, 8, 8).bfloat16()
    fast = layer.to(torch.bfloat16)(x.contiguous(memory_format=torch.channels_last))
    assert fast.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(fast.float(), torch.nn.functional.group_norm(
        x.float(), 4, layer.weight.float(), layer.bias.float()), atol=0.05, rtol=0.02)


def test_groupnorm_bf16_channels_last_path_hands_back_a_channels_last_gradient_of_the_same_values():
    torch.manual_seed(0)
    layer = get_norm_layer("gn")(32, groups=4).to(torch.bfloat16)
    torch.nn.init.uniform_(layer.weight)
    x = torch.randn(4, 32, 8, 8).bfloat16().contiguous(memory_format=torch.channels_last)
    up = torch.randn(4, 32, 8, 8).bfloat16()
    leaf = x.clone().requires_grad_()
    fast = leaf * 1  # not a leaf: what reaches the layer before, before autograd's leaf-layout rule
    grads = []
    fast.register_hook(grads.append)
    (layer(fast).float() * up.float()).sum().backward()
    plain = x.contiguous().requires_grad_()  # NCHW: the plain kernel
    (layer(plain).float() * up.float()).sum().backward()
    assert grads[0].is_contiguous(memory_format=torch.channels_last)  # ReLU's backward is slow otherwise
    torch.testing.assert_close(grads[0].float(), plain.grad.float(), atol=0.05, rtol=0.02)


@pytest.mark.parametrize("arch", ["s8", "resnet8", "convmixer-s16", "convmixer-fr32"])
def test_every_architecture_pools_through_the_global_pool(arch):
    from normlab.models.common import GlobalAvgPool

    pools = [m for m in build_model(arch, "bn").modules() if isinstance(m, GlobalAvgPool)]
    assert len(pools) == 1  # so each gets the channels_last gradient tested below


def test_global_pool_hands_back_a_channels_last_gradient():
    from normlab.models.common import GlobalAvgPool

    x = torch.randn(4, 16, 8, 8).contiguous(memory_format=torch.channels_last)
    for pool in (GlobalAvgPool(), GlobalAvgPool(mean=True)):
        leaf = x.clone().requires_grad_()
        h = leaf * 1  # not a leaf: what reaches the layer before
        grads = []
        h.register_hook(grads.append)
        out = pool(h)
        torch.testing.assert_close(out, x.mean((2, 3), keepdim=True))
        (out.flatten(1) * torch.arange(16.0)).sum().backward()
        assert grads[0].is_contiguous(memory_format=torch.channels_last)  # mixed layouts are slow before it
        torch.testing.assert_close(grads[0], torch.arange(16.0).view(1, 16, 1, 1).expand(4, 16, 8, 8) / 64)
    plain = GlobalAvgPool()(x)  # no gradient wanted: the plain pool, the same values
    torch.testing.assert_close(plain, torch.nn.functional.adaptive_avg_pool2d(x, 1))


def test_devices_resolve_on_a_cpu_machine():
    from normlab.devices import autocast, resolve_device, resolve_precision

    assert resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(NormlabError, match="--device cuda: no CUDA GPU"):
            resolve_device("cuda")
    with pytest.raises(NormlabError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    assert resolve_precision("fp32", torch.device("cpu")) == "fp32"
    assert resolve_precision("auto", torch.device("mps")) == "fp32"
    with autocast(torch.device("cpu"), "bf16"):
        assert torch.nn.Linear(4, 4)(torch.randn(2, 4)).dtype == torch.bfloat16


def test_old_architecture_names_still_build_their_nets():
    # weights files from before the convmixer names carry the old ones
    from normlab.models import RENAMED

    for old, new in RENAMED.items():
        a, b = build_model(old, "bn"), build_model(new, "bn")
        assert {k: v.shape for k, v in a.state_dict().items()} == {k: v.shape for k, v in b.state_dict().items()}
