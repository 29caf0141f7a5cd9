"""The norm zoo and users' own norms: each built-in norm's statistics against a hand computation (train and
eval mode), the budget of every norm on the shipped architectures, and norms brought in from outside."""
import sys
import textwrap

import pytest
import torch

from conftest import assert_one_line_error, run_cli
from normlab import norms
from normlab.errors import NormlabError
from normlab.models import build_model, count_params
from normlab.names import NORMS

torch.manual_seed(0)
X = torch.randn(4, 16, 5, 5) * 3 + 1


def _randomize(layer):
    """Scales, shifts and thresholds away from their initial 1s and 0s, so the test sees them applied."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return layer


def _affine(y, layer, shift=True):
    w = layer.weight.view(1, -1, 1, 1)
    return y * w + (layer.bias.view(1, -1, 1, 1) if shift else 0)


def _standardize(x, dims, eps):
    mean = x.mean(dims, keepdim=True)
    var = ((x - mean) ** 2).mean(dims, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps)


def _expected(name, layer, x):
    if name == "in":
        return _affine(_standardize(x, (2, 3), layer.eps), layer)
    if name == "ln2d":
        return _affine(_standardize(x, (1,), layer.eps), layer)
    if name == "rms":
        return _affine(x / torch.sqrt((x ** 2).mean((1, 2, 3), keepdim=True) + layer.eps), layer, shift=False)
    if name == "gn-ws":
        g = layer.num_groups
        return _affine(_standardize(x.view(4, g, -1, 5, 5), (2, 3, 4), layer.eps).view_as(x), layer)
    if name == "frn":
        y = _affine(x / torch.sqrt((x ** 2).mean((2, 3), keepdim=True) + layer.eps), layer)
        return torch.maximum(y, layer.tau.view(1, -1, 1, 1))
    if name == "evonorm-s0":
        g = layer.groups
        var = x.view(4, g, -1).var(-1, unbiased=False).repeat_interleave(16 // g, 1).view(4, 16, 1, 1)
        return _affine(x * torch.sigmoid(layer.v.view(1, -1, 1, 1) * x) / torch.sqrt(var + layer.eps), layer)
    if name == "none":
        return x + layer.bias.view(1, -1, 1, 1)
    raise KeyError(name)


@pytest.mark.parametrize("name", ["in", "ln2d", "rms", "gn-ws", "frn", "evonorm-s0", "none"])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_batch_independent_norms_match_a_hand_computation(name, mode):
    layer = _randomize(norms.get_norm_layer(name)(16))
    layer.train(mode == "train")
    torch.testing.assert_close(layer(X), _expected(name, layer, X), rtol=1e-4, atol=1e-4)
    # per-sample norms: a sample's output does not depend on the rest of the batch
    torch.testing.assert_close(layer(X[:1]), layer(X)[:1], rtol=1e-4, atol=1e-4)


def test_batch_renorm_trains_on_corrected_batch_statistics_and_evaluates_on_running_ones():
    layer = _randomize(norms.get_norm_layer("brn")(16))
    layer.num_batches_tracked.fill_(10_000)  # past the warm-up: r and d fully open
    layer.running_mean.copy_(X.mean((0, 2, 3)) + 0.5)
    layer.running_var.copy_(X.var((0, 2, 3)) * 1.5)
    mean, var = X.mean((0, 2, 3), keepdim=True), X.var((0, 2, 3), unbiased=False, keepdim=True)
    std = torch.sqrt(var + layer.eps)
    rm, rv = layer.running_mean.clone().view(1, -1, 1, 1), layer.running_var.clone().view(1, -1, 1, 1)
    r = (std / torch.sqrt(rv + layer.eps)).clamp(1 / 3, 3)
    d = ((mean - rm) / torch.sqrt(rv + layer.eps)).clamp(-5, 5)
    layer.train()
    torch.testing.assert_close(layer(X), _affine((X - mean) / std * r + d, layer), rtol=1e-4, atol=1e-4)
    assert torch.allclose(layer.running_mean, rm.flatten() + 0.1 * (mean.flatten() - rm.flatten()))
    layer.eval()
    rm, rv = layer.running_mean.view(1, -1, 1, 1), layer.running_var.view(1, -1, 1, 1)
    torch.testing.assert_close(layer(X), _affine((X - rm) / torch.sqrt(rv + layer.eps), layer), rtol=1e-4, atol=1e-4)


def test_batch_renorm_starts_as_batch_norm():
    brn, bn = norms.get_norm_layer("brn")(16), torch.nn.BatchNorm2d(16)
    torch.testing.assert_close(brn(X), bn(X), rtol=1e-4, atol=1e-4)  # r = 1, d = 0 before the warm-up


def test_gn_ws_standardizes_the_convs_before_its_norms():
    model = build_model("s8", "gn-ws")
    conv = model.layers.C1[0]
    assert type(conv).__name__ == "WSConv2d"
    w = conv.standardized_weight()
    assert w.mean((1, 2, 3)).abs().max() < 1e-5 and (w.var((1, 2, 3), unbiased=False) - 1).abs().max() < 1e-2


def test_no_norm_keeps_the_signal_alive_through_s8():
    torch.manual_seed(0)
    for norm in ("none", "bn"):
        model = build_model("s8", norm).train()
        with torch.no_grad():  # up to C10, before GAP and c11
            feats = model.layers[:-2](model.normalize(torch.rand(64, 3, 32, 32)))
        assert 0.05 < float(feats.std()) < 20, norm


@pytest.mark.parametrize("arch", ["s8", "convmixer-hr2"])
@pytest.mark.parametrize("name", NORMS)
def test_every_norm_fits_s8_and_convmixer_hr2_in_the_budget(arch, name):
    model = build_model(arch, name)
    assert count_params(model) <= 50_000
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("arch", ["convmixer-s16", "convmixer-fr32"])
def test_norms_with_three_values_per_channel_overflow_the_widest_convmixers(arch):
    # docs/norms.md says so in its table instead of silently changing the architecture
    assert {n for n in NORMS if count_params(build_model(arch, n)) > 50_000} == {"frn", "evonorm-s0"}


# --- a user's own norm ---------------------------------------------------------------------------------
RMS_FILE = '''
    import torch
    from torch import nn


    class MyRMS(nn.Module):
        """RMS over (H, W) per sample and channel, one scale per channel."""

        def __init__(self, channels, groups=None, spatial=None):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(channels))

        def forward(self, x):
            return x * torch.rsqrt(x.pow(2).mean((2, 3), keepdim=True) + 1e-5) * self.weight.view(1, -1, 1, 1)


    def make(channels, groups=None, spatial=None):
        return MyRMS(channels)


    def wrong_shape(channels, groups=None, spatial=None):
        return nn.Conv2d(channels, channels * 2, 1)


    def huge(channels, groups=None, spatial=None):
        return nn.Conv2d(channels, channels, 3, padding=1)

    not_callable = 3
'''


@pytest.fixture
def user_norm(tmp_path, monkeypatch):
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "my_norms.py").write_text(textwrap.dedent(RMS_FILE))
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("PYTHONPATH", str(folder))
    yield folder
    for name in [n for n in norms.NORMS if n.startswith("my_norms:") or n == "myrms"]:
        del norms.NORMS[name]
    sys.modules.pop("my_norms", None)


def test_a_norm_from_a_spec_builds_every_architecture(user_norm):
    model = build_model("s8", "my_norms:make")
    assert count_params(model) == 48_096 - 240  # one value per norm channel instead of BN's two
    assert type(model.layers.C1[1]).__name__ == "MyRMS"


def test_register_norm_adds_a_name(user_norm):
    import my_norms

    import normlab

    norms.register_norm("myrms", my_norms.make)
    assert count_params(normlab.build_model("convmixer-hr2", "myrms")) < 50_000
    with pytest.raises(NormlabError, match="already registered"):
        norms.register_norm("myrms", my_norms.MyRMS)


@pytest.mark.parametrize("spec, message", [
    ("no_such_module:make", "cannot import 'no_such_module'"),
    ("my_norms:missing", "has no 'missing'"),
    ("my_norms:not_callable", "is not callable"),
    ("my_norms:wrong_shape", "a norm must keep its input's shape"),
])
def test_bad_specs_are_one_line_errors(user_norm, spec, message):
    with pytest.raises(NormlabError, match=message):
        build_model("s8", spec)


def test_a_norm_over_the_budget_is_refused_by_the_cli(user_norm, tmp_path):
    assert_one_line_error(run_cli("train", "--norm", "my_norms:huge", "--out", tmp_path / "r", cwd=tmp_path),
                          "over the 50,000 budget")


def test_entry_points_add_norms(user_norm, monkeypatch):
    from importlib import metadata

    class EntryPoint:
        name, value = "ep-rms", "my_norms:make"

        def load(self):
            import my_norms

            return my_norms.make

    monkeypatch.setattr(metadata, "entry_points", lambda group: [EntryPoint()] if group == "normlab.norms" else [])
    try:
        assert type(build_model("s8", "ep-rms").layers.C1[1]).__name__ == "MyRMS"
    finally:
        norms.NORMS.pop("ep-rms", None)


@pytest.mark.parametrize("name", NORMS)
def test_bf16_input_gives_the_float32_result_within_bf16_precision(name):
    layer = _randomize(norms.get_norm_layer(name)(16)).train()
    x = X.clone()
    want = layer(x)
    got = layer(x.to(torch.bfloat16))
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), want, rtol=0.05, atol=0.1)
