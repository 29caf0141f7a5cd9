"""torch.compile: the hand-written GroupNorm that compiled models use, `--compile auto|on|off`, and a real
compiled run."""
import json

import pytest
import torch
from torch import nn

from conftest import run_cli
from normlab import devices, fused
from normlab.config import TrainConfig, resolve
from normlab.errors import NormlabError
from normlab.norms import GroupNorm


@pytest.mark.parametrize("groups", [1, 4, 8, 32])
@pytest.mark.parametrize("channels_last", [False, True])
def test_fused_group_norm_matches_pytorch_values_and_gradients(groups, channels_last):
    torch.manual_seed(groups)
    ref = nn.GroupNorm(groups, 32).double()
    nn.init.normal_(ref.weight)
    nn.init.normal_(ref.bias)
    x = (torch.randn(3, 32, 6, 5, dtype=torch.float64) * 3 + 1)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    w, b = ref.weight.detach().clone().requires_grad_(), ref.bias.detach().clone().requires_grad_()
    grad = torch.randn(3, 32, 6, 5, dtype=torch.float64)
    y1 = ref(x1)
    y1.backward(grad)
    y2 = fused.group_norm(x2, groups, w, b, ref.eps)
    y2.backward(grad)
    # the fused path computes in float32 (as it does for bf16 input), so agreement is to float32 precision
    assert torch.allclose(y1, y2.double(), atol=1e-5)
    assert torch.allclose(x1.grad, x2.grad.double(), atol=1e-5)
    assert torch.allclose(ref.weight.grad, w.grad, atol=1e-4)
    assert torch.allclose(ref.bias.grad, b.grad, atol=1e-4)


def test_compiled_group_norm_takes_the_fused_path_and_agrees_with_eager(monkeypatch):
    calls = []
    real = fused.group_norm
    monkeypatch.setattr(fused, "group_norm", lambda *a, **k: calls.append(1) or real(*a, **k))
    torch.manual_seed(0)
    layer = GroupNorm(4, 16)
    nn.init.normal_(layer.weight)
    x = torch.randn(4, 16, 8, 8).contiguous(memory_format=torch.channels_last)
    xe, xc = x.clone().requires_grad_(), x.clone().requires_grad_()
    eager = layer(xe)
    assert not calls  # eager: PyTorch's own kernel
    compiled = torch.compile(layer, dynamic=False)(xc)
    assert calls  # traced through the hand-written one
    assert torch.allclose(eager, compiled, atol=1e-5)
    eager.square().sum().backward()
    compiled.square().sum().backward()
    assert torch.allclose(xe.grad, xc.grad, atol=1e-4)


def test_resolve_compile_modes(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.delenv("NORMLAB_COMPILE", raising=False)
    assert devices.resolve_compile("on", cpu, "s8", "bn", "bf16", 128) is True
    assert devices.resolve_compile("off", cpu, "s8", "bn", "bf16", 128) is False
    assert devices.resolve_compile(True, cpu, "s8", "bn", "bf16", 128) is True  # the API's old boolean
    with pytest.raises(NormlabError, match="unknown compile mode 'fast'"):
        devices.resolve_compile("fast", cpu, "s8", "bn", "bf16", 128)
    # auto: exactly the measured (device class, precision, arch) -> norms table
    monkeypatch.setattr(devices, "cpu_class", lambda info=None: "amx")
    monkeypatch.setattr(devices, "cpu_compiler", lambda: "/usr/bin/g++")
    monkeypatch.setattr(devices, "COMPILE_FASTER", {("cpu-amx", "bf16", "s8", 128): frozenset({"bn"})})
    assert devices.resolve_compile("auto", cpu, "s8", "bn", "bf16", 128) is True
    assert devices.resolve_compile("auto", cpu, "s8", "gn", "bf16", 128) is False  # not measured faster
    assert devices.resolve_compile("auto", cpu, "s8", "bn", "fp32", 128) is False
    assert devices.resolve_compile("auto", cpu, "s8", "bn", "bf16", 64) is False  # batch size not measured
    assert devices.resolve_compile("auto", cpu, "convmixer-s16", "bn", "bf16", 128) is False
    assert devices.resolve_compile("auto", cpu, "s8", "mypkg.norms:rms", "bf16", 128) is False  # plugins: never
    assert devices.resolve_compile("auto", torch.device("cuda"), "s8", "bn", "bf16", 128) is False  # unmeasured
    monkeypatch.setattr(devices, "cpu_compiler", lambda: None)
    assert devices.resolve_compile("auto", cpu, "s8", "bn", "bf16", 128) is False  # nothing to compile with
    assert devices.resolve_compile("on", cpu, "s8", "bn", "bf16", 128) is True  # asked for: torch says why not
    # NORMLAB_COMPILE sets what auto means, and only auto
    monkeypatch.setenv("NORMLAB_COMPILE", "on")
    assert devices.resolve_compile("auto", cpu, "s8", "gn", "fp32", 128) is True
    assert devices.resolve_compile("off", cpu, "s8", "gn", "fp32", 128) is False
    monkeypatch.setenv("NORMLAB_COMPILE", "yes")
    with pytest.raises(NormlabError, match="NORMLAB_COMPILE='yes'"):
        devices.resolve_compile("auto", cpu, "s8", "gn", "fp32", 128)


@pytest.mark.parametrize("flags, expected", [
    (["avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"], "amx"),
    (["avx2", "avx512f", "avx512_bf16"], "avx512-bf16"),
    (["avx2", "avx512f"], "avx512"),
    (["avx2"], "avx2"),
    ([], "other"),
])
def test_cpu_class(flags, expected):
    assert devices.cpu_class({"model": "x", "flags": flags}) == expected


def test_bad_compile_mode_is_refused_before_training(tmp_path):
    with pytest.raises(NormlabError, match="unknown compile mode"):
        resolve(TrainConfig(compile="sometimes", out=str(tmp_path / "r")))
    proc = run_cli("train", "--compile", "sometimes", "--out", tmp_path / "r2")
    assert proc.returncode == 2 and "invalid choice: 'sometimes'" in proc.stderr
    assert not (tmp_path / "r2").exists()


def test_compiled_training_run_on_real_data(real_data_dir, tmp_path):
    """`--compile on`: full batches compiled, the last smaller one eager; recorded in results.json."""
    out = tmp_path / "run"
    proc = run_cli("train", "--arch", "s8", "--norm", "gn", "--epochs", "1", "--train-size", "320",
                   "--data-dir", real_data_dir, "--out", out, "--no-progress", "--compile", "on")
    assert proc.returncode == 0, proc.stderr
    assert "| compiled |" in proc.stdout
    results = json.loads((out / "results.json").read_text())
    assert results["compiled"] is True and 0.0 <= results["test_acc"] <= 100.0
    proc = run_cli("train", "--arch", "s8", "--norm", "gn", "--epochs", "1", "--train-size", "320",
                   "--data-dir", real_data_dir, "--out", tmp_path / "eager", "--no-progress", "--compile", "off")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "eager" / "results.json").read_text())["compiled"] is False


def test_precision_auto_picks_float32_where_bf16_was_measured_slower(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(devices, "cpu_supports_bf16", lambda: True)
    monkeypatch.setattr(devices, "cpu_class", lambda info=None: "amx")
    assert devices.resolve_precision("auto", cpu, "convmixer-s16", "gn") == "fp32"
    assert devices.resolve_precision("auto", cpu, "convmixer-s16", "bn") == "bf16"
    assert devices.resolve_precision("auto", cpu, "s8", "gn") == "bf16"
    assert devices.resolve_precision("bf16", cpu, "convmixer-s16", "gn") == "bf16"  # asked for: kept
    monkeypatch.setattr(devices, "cpu_class", lambda info=None: "avx512-bf16")
    assert devices.resolve_precision("auto", cpu, "convmixer-s16", "gn") == "bf16"
    monkeypatch.setattr(devices, "cpu_supports_bf16", lambda: False)
    assert devices.resolve_precision("auto", cpu, "s8", "bn") == "fp32"
