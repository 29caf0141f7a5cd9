"""Export (normlab.deploy): BatchNorm folding parity, ONNX and TorchScript parity with PyTorch, int8
quantization, the export card and the CLI's errors."""
import json

import pytest
import torch
from torch import nn

from conftest import assert_one_line_error, run_cli
from normlab.deploy import ChannelShift, fold_batch_norm, load_torchscript, save_onnx, save_torchscript, torch_logits
from normlab.models import build_model


def randomized(model: nn.Module, negative_scale: bool = False) -> nn.Module:
    """``model`` with BatchNorm statistics and affine parameters far from their initial values, so that
    folding has something to fold."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(c, generator=g) * 2 + 0.1)
            m.weight.data.copy_(torch.rand(c, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(c, generator=g) * 0.3)
            if negative_scale:
                m.weight.data[0] = -0.7
    return model.eval()


def uint8_images(n=32):
    return torch.randint(0, 256, (n, 3, 32, 32), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)


def test_s8_batch_norms_fold_into_their_convs_exactly():
    model = randomized(build_model("s8", "bn"))
    folded, counts = fold_batch_norm(model)
    assert counts == {"into_conv": 8, "scale_only": 0, "left": 0}
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    x = uint8_images()
    assert torch.allclose(torch_logits(folded, x), torch_logits(model, x), atol=1e-4, rtol=0)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # the original is untouched


def test_batch_norms_after_a_relu_fold_their_scale_when_it_is_positive():
    model = randomized(build_model("convmixer-hr2", "bn"))
    folded, counts = fold_batch_norm(model)
    assert counts["scale_only"] == 20 and counts["left"] == 0
    assert sum(isinstance(m, ChannelShift) for m in folded.modules()) == 20
    x = uint8_images()
    assert torch.allclose(torch_logits(folded, x), torch_logits(model, x), atol=1e-4, rtol=0)
    # a negative scale cannot pass through the ReLU: those layers stay BatchNorms
    _, counts = fold_batch_norm(randomized(build_model("convmixer-hr2", "bn"), negative_scale=True))
    assert counts["scale_only"] == 0 and counts["left"] == 20
    _, counts = fold_batch_norm(model, after_relu=False)
    assert counts == {"into_conv": 0, "scale_only": 0, "left": 20}


def test_per_sample_norms_have_nothing_to_fold():
    model = build_model("s8", "gn").eval()
    folded, counts = fold_batch_norm(model)
    assert counts == {"into_conv": 0, "scale_only": 0, "left": 0}
    x = uint8_images(8)
    assert torch.equal(torch_logits(folded, x), torch_logits(model, x))


@pytest.mark.parametrize("norm", ["bn", "gn", "ln"])
def test_onnx_logits_match_pytorch(tmp_path, norm):
    pytest.importorskip("onnxruntime")
    from normlab.deploy import onnx_logits, onnx_session

    model = randomized(build_model("s8", norm))
    folded, _ = fold_batch_norm(model)
    save_onnx(folded, tmp_path / "m.onnx")
    x = uint8_images(300)  # batch sizes other than the traced one: the batch axis is dynamic
    got, want = onnx_logits(onnx_session(tmp_path / "m.onnx"), x, batch_size=97), torch_logits(model, x)
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-5), (got - want).abs().max()


def test_torchscript_logits_match_pytorch(tmp_path):
    model = randomized(build_model("s8", "bn"))
    save_torchscript(fold_batch_norm(model)[0], tmp_path / "m.pt")
    x = uint8_images()
    loaded = load_torchscript(tmp_path / "m.pt")
    assert torch.allclose(torch_logits(loaded, x), torch_logits(model, x), atol=1e-4, rtol=1e-5)


def test_export_pretrained_gn_onnx_int8_on_the_cli(tmp_path, real_data_dir):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "gn"
    proc = run_cli("export", "--pretrained", "gn", "--format", "onnx", "--int8", "--calibration-images", "200",
                   "--out", out)
    assert proc.returncode == 0, proc.stderr
    card = json.loads((out / "export.json").read_text())
    onnx_file, int8_file = card["files"]["model.onnx"], card["files"]["model.int8.onnx"]
    assert onnx_file["parity"] and onnx_file["max_abs_diff"] < 1e-3
    assert onnx_file["test_acc"] == pytest.approx(card["test_acc_pytorch"], abs=0.02)
    assert int8_file["test_acc"] > card["test_acc_pytorch"] - 3  # int8 costs little on this model
    assert int8_file["bytes"] < onnx_file["bytes"]
    assert set(card["latency_ms"]) == {"pytorch fp32 (as trained, unfolded)", "onnxruntime fp32", "onnxruntime int8"}
    assert "model.int8.onnx" in (out / "export.md").read_text()
    before = (out / "export.json").read_bytes()
    assert_one_line_error(run_cli("export", "--pretrained", "gn", "--out", out), "already holds an export")
    assert (out / "export.json").read_bytes() == before


def test_export_bad_inputs(tmp_path):
    assert_one_line_error(run_cli("export", "--pretrained", "gn", "--format", "torchscript", "--int8",
                                  "--out", tmp_path / "e"), "--int8", "--format onnx")
    assert_one_line_error(run_cli("export", "--out", tmp_path / "e"), "--pretrained NORM")
    (tmp_path / "file").write_text("x")
    assert_one_line_error(run_cli("export", "--pretrained", "gn", "--out", tmp_path / "file"), "in the way")
    assert_one_line_error(run_cli("export", "--pretrained", "gn", "--calibration-images", "0",
                                  "--out", tmp_path / "e"), "--calibration-images")
