"""What a trained model costs after training: BatchNorm folding, TorchScript and ONNX export, int8
post-training quantization (ONNX Runtime) and inference latency.

Folding. A BatchNorm in evaluation mode is a fixed per-channel affine map ``a * x + b``. Right after a
conv (S8's conv -> BN -> ReLU) it folds into that conv's weights and bias exactly, at zero cost. After a
ReLU (ConvMixer's conv -> ReLU -> BN) only its scale can move into the conv, and only where every ``a``
is positive (``a * relu(z) = relu(a * z)`` for ``a > 0``); its shift stays as a per-channel add. Per-sample
norms (GroupNorm, LayerNorm, ...) compute their statistics from each input and cannot fold at all; the
report counts what folded.

ONNX export needs the ``export`` extra (``pip install normlab[export]``: onnx, onnxscript, onnxruntime).
Models take float images in [0, 1] of shape (N, 3, 32, 32) (input normalization is part of the model) and
return logits (N, 10); the ONNX graph's batch dimension is dynamic.
"""
from __future__ import annotations

import copy
import os
import time
from pathlib import Path

import torch
from torch import nn

from .errors import NormlabError

FORMATS = ("onnx", "torchscript")
OPSET = 18
CALIBRATION_IMAGES = 1000  # training images the int8 ranges are calibrated on
PARITY_TOL = 1e-4  # largest allowed |logit difference| between an export and the PyTorch model


class ChannelShift(nn.Module):
    """What is left of a BatchNorm after a ReLU once its scale has moved into the conv: ``x + b``."""

    def __init__(self, shift: torch.Tensor):
        super().__init__()
        self.register_buffer("shift", shift.detach().clone().view(1, -1, 1, 1))

    def forward(self, x):
        return x + self.shift


def _bn_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    scale = (bn.weight if bn.affine else torch.ones_like(bn.running_var)) / torch.sqrt(bn.running_var + bn.eps)
    shift = (bn.bias if bn.affine else torch.zeros_like(bn.running_mean)) - bn.running_mean * scale
    return scale.detach(), shift.detach()


def _scaled_conv(conv: nn.Conv2d, scale: torch.Tensor, shift: torch.Tensor | None) -> nn.Conv2d:
    """``conv`` with each output channel multiplied by ``scale`` and ``shift`` added to its bias."""
    new = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                    conv.dilation, conv.groups, bias=conv.bias is not None or shift is not None,
                    padding_mode=conv.padding_mode)
    with torch.no_grad():
        w = conv.weight.detach()
        new.weight.copy_(w * scale.view(-1, 1, 1, 1))
        if new.bias is not None:
            b = conv.bias.detach() * scale if conv.bias is not None else torch.zeros_like(scale)
            new.bias.copy_(b + (shift if shift is not None else 0))
    return new


def _plain_conv(m: nn.Module) -> bool:
    # Subclasses that transform their weight in forward (weight standardization) cannot take a scale.
    return isinstance(m, nn.Conv2d) and type(m).forward is nn.Conv2d.forward


def fold_batch_norm(model: nn.Module, after_relu: bool = True) -> tuple[nn.Module, dict]:
    """A copy of ``model`` (evaluation mode) with its BatchNorms folded where possible, and counts:
    ``into_conv`` (folded whole), ``scale_only`` (scale folded, shift kept as an add; only with
    ``after_relu``) and ``left``."""
    model = copy.deepcopy(model).eval()
    counts = {"into_conv": 0, "scale_only": 0, "left": 0}
    for parent in model.modules():
        if not isinstance(parent, nn.Sequential):
            continue
        names = list(parent._modules)
        for i, name in enumerate(names):
            bn = parent._modules[name]
            if type(bn) is not nn.BatchNorm2d:
                continue
            prev = parent._modules[names[i - 1]] if i >= 1 else None
            prev2 = parent._modules[names[i - 2]] if i >= 2 else None
            scale, shift = _bn_affine(bn)
            if _plain_conv(prev):
                parent._modules[names[i - 1]] = _scaled_conv(prev, scale, shift)
                parent._modules[name] = nn.Identity()
                counts["into_conv"] += 1
            elif after_relu and isinstance(prev, nn.ReLU) and _plain_conv(prev2) and bool((scale > 0).all()):
                parent._modules[names[i - 2]] = _scaled_conv(prev2, scale, None)
                parent._modules[name] = ChannelShift(shift)
                counts["scale_only"] += 1
    counts["left"] = sum(type(m) is nn.BatchNorm2d for m in model.modules())
    for m in model.modules():  # evaluation mode makes dropout the identity; say so in the graph too
        for k, child in list(m._modules.items()):
            if isinstance(child, (nn.Dropout, nn.Dropout2d)):
                m._modules[k] = nn.Identity()
    return model, counts


def norm_layers(model: nn.Module) -> int:
    """How many normalization layers ``model`` has (anything named *Norm* or a ChannelShift)."""
    return sum("Norm" in type(m).__name__ for m in model.modules())


def _require_onnx():
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise NormlabError(f"ONNX export needs {e.name}; install the export extra: pip install 'normlab[export]' "
                           "(bash scripts/setup.sh installs it)") from None


def save_torchscript(model: nn.Module, path: Path) -> None:
    import warnings

    example = torch.rand(2, 3, 32, 32)
    tmp = path.with_name(f".{path.name}.tmp")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated in favour of torch.export
        traced = torch.jit.trace(model.eval(), example, check_trace=False)
        traced.save(str(tmp))
    os.replace(tmp, path)


def load_torchscript(path: Path) -> nn.Module:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.load(str(path))


def save_onnx(model: nn.Module, path: Path) -> None:
    _require_onnx()
    import logging
    import warnings

    tmp = path.with_name(f".{path.name}.tmp")
    batch = torch.export.Dim("batch", min=1, max=4096)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model.eval(), (torch.rand(2, 3, 32, 32),), dynamo=True, opset_version=OPSET,
                                    input_names=["images"], output_names=["logits"],
                                    dynamic_shapes=({0: batch},), external_data=False, verbose=False)
    program.save(str(tmp))
    os.replace(tmp, path)


def onnx_session(path: Path):
    _require_onnx()
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def onnx_runner(session):
    """A function from a uint8 batch (N, 3, 32, 32) to the session's logits (a NumPy array)."""
    return lambda images: session.run(["logits"], {"images": (images.float() / 255).numpy()})[0]


def onnx_logits(session, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Logits of uint8 images (N, 3, 32, 32) from an ONNX Runtime session."""
    run = onnx_runner(session)
    out = [torch.from_numpy(run(images[i:i + batch_size])) for i in range(0, len(images), batch_size)]
    return torch.cat(out) if out else torch.zeros(0, 10)


def torch_logits(model: nn.Module, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Float32 logits of uint8 images, channels_last as normlab evaluates."""
    from .devices import to_input

    model.eval()
    with torch.inference_mode():
        return torch.cat([model(to_input(images[i:i + batch_size])) for i in range(0, len(images), batch_size)])


def quantize_int8(fp32_path: Path, out_path: Path, calibration: torch.Tensor) -> None:
    """Static int8 quantization (QDQ, per-channel weights) with ONNX Runtime, activation ranges calibrated
    on ``calibration`` (uint8 training images)."""
    _require_onnx()
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType, quant_pre_process,
                                          quantize_static)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([(calibration[i:i + 100].float() / 255).numpy()
                                 for i in range(0, len(calibration), 100)])

        def get_next(self):
            x = next(self.batches, None)
            return None if x is None else {"images": x}

    import logging

    prepped = out_path.with_name(f".{out_path.stem}.prep.onnx")
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer warns on the root logger about tensors it rightly skips
    try:
        quant_pre_process(str(fp32_path), str(prepped), skip_symbolic_shape=True)
        quantize_static(str(prepped), str(tmp), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        op_types_to_quantize=["Conv", "Gemm", "MatMul"],
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        os.replace(tmp, out_path)
    finally:
        root.setLevel(level)
        for p in (prepped, tmp):
            p.unlink(missing_ok=True)


def save_int8_onnx(model: nn.Module, path: Path, calibration: torch.Tensor, fold: bool = True) -> None:
    """``model`` as int8 ONNX (:func:`quantize_int8`), quantized from a graph where only conv -> BN pairs are
    folded: moving a BN's scale in front of a ReLU spreads the conv's output channels over a 1000x range
    (scales 0.01-99 in the pretrained BN ConvMixer), which one int8 range per tensor cannot hold (measured:
    11.7% test accuracy instead of 90.4%)."""
    exact = fold_batch_norm(model, after_relu=False)[0] if fold else model
    plain = path.with_name(f".{path.stem}.fp32-for-int8.onnx")
    try:
        save_onnx(exact, plain)
        quantize_int8(plain, path, calibration)
    finally:
        plain.unlink(missing_ok=True)


def latency_ms(run, batch: int, repeats: int | None = None, warmup: int = 3) -> float:
    """Median wall time in milliseconds of ``run(x)`` on a random uint8 batch of ``batch`` images."""
    x = torch.randint(0, 256, (batch, 3, 32, 32), dtype=torch.uint8)
    repeats = repeats or (200 if batch == 1 else 10)
    for _ in range(warmup):
        run(x)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        run(x)
        times.append(time.perf_counter() - t)
    times.sort()
    return 1000 * times[len(times) // 2]


def _accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return round(100.0 * float((logits.argmax(1) == labels).float().mean()), 2)


def export_model(model: nn.Module, source: str, out: Path, *, fmt: str = "onnx", int8: bool = False,
                 fold: bool = True, calibration_images: int = CALIBRATION_IMAGES, data_dir=None,
                 overwrite: bool = False, log=print) -> dict:
    """Export ``model`` into ``out`` (model.onnx or model.pt; model.int8.onnx with ``int8``) and write its
    export card (export.md, export.json): folding, file sizes, parity with PyTorch, test accuracy of each
    exported file and its latency at batch 1 and 256 on this machine."""
    from .config import check_int
    from .data import load_cifar10
    from .devices import cpu_description
    from .models import count_params

    if fmt not in FORMATS:
        raise NormlabError(f"unknown export format {fmt!r}; choose onnx or torchscript")
    if int8 and fmt != "onnx":
        raise NormlabError("--int8 quantizes with ONNX Runtime; use it with --format onnx")
    check_int(calibration_images, "--calibration-images", 1)
    if fmt == "onnx":
        _require_onnx()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NormlabError(f"{out}: a file of that name is in the way; pass another --out")
    if (out / "export.json").exists() and not overwrite:
        raise NormlabError(f"{out} already holds an export; pass --overwrite to replace it or another --out")
    out.mkdir(parents=True, exist_ok=True)
    data = load_cifar10(data_dir)
    model = model.float().eval()
    folded, counts = fold_batch_norm(model) if fold else (copy.deepcopy(model).eval(), None)
    x, y = data.test_x, data.test_y
    reference = torch_logits(model, x)
    card = {"source": source, "params": count_params(model), "cpu": cpu_description()["model"],
            "format": fmt, "folded": counts, "torch": torch.__version__, "threads": torch.get_num_threads(),
            "parity_tolerance": f"abs. difference <= {PARITY_TOL} + 1e-5 x abs. logit on all {len(x):,} test images",
            "test_acc_pytorch": _accuracy(reference, y), "files": {}}
    if fold:
        card["fold_max_abs_diff"] = float((torch_logits(folded, x) - reference).abs().max())
    name = "model.onnx" if fmt == "onnx" else "model.pt"
    if fmt == "onnx":
        save_onnx(folded, out / name)
        session = onnx_session(out / name)
        exported = onnx_logits(session, x)
        runners = {"onnxruntime fp32": onnx_runner(session)}
    else:
        save_torchscript(folded, out / name)
        scripted = load_torchscript(out / name)
        exported = torch_logits(scripted, x)
        runners = {"torchscript fp32": lambda b: torch_logits(scripted, b)}
    diff = (exported - reference).abs()
    card["files"][name] = {"bytes": (out / name).stat().st_size, "test_acc": _accuracy(exported, y),
                           "max_abs_diff": float(diff.max()),
                           "parity": bool((diff <= PARITY_TOL + 1e-5 * reference.abs()).all())}
    if int8:
        save_int8_onnx(model, out / "model.int8.onnx", data.train_x[:calibration_images], fold)
        q = onnx_session(out / "model.int8.onnx")
        card["files"]["model.int8.onnx"] = {"bytes": (out / "model.int8.onnx").stat().st_size,
                                            "test_acc": _accuracy(onnx_logits(q, x), y),
                                            "calibration": f"first {calibration_images:,} training images"}
        runners["onnxruntime int8"] = onnx_runner(q)
    else:
        (out / "model.int8.onnx").unlink(missing_ok=True)  # an earlier export's int8 file would not match
    runners = {"pytorch fp32 (as trained, unfolded)": lambda b: torch_logits(model, b), **runners}
    card["latency_ms"] = {k: {str(b): round(latency_ms(fn, b), 3) for b in (1, 256)} for k, fn in runners.items()}
    write_card(out, card)
    log(f"export: {out / name}" + (f", {out / 'model.int8.onnx'}" if int8 else "") + f"; card {out / 'export.md'}")
    return card


def write_card(out: Path, card: dict) -> None:
    from .runs import atomic_write_json, atomic_write_text

    atomic_write_json(out / "export.json", card)
    f = card["folded"]
    fold = ("not folded (--no-fold)" if f is None else
            "nothing to fold: no BatchNorm (this norm computes its statistics from each input)" if not any(f.values())
            else f"{f['into_conv']} BatchNorm(s) folded into the conv before them, {f['scale_only']} with only their "
            f"scale folded (they follow a ReLU; their shift stays an add), {f['left']} left as they are")
    rows = [("source", card["source"]), ("parameters", f"{card['params']:,}"), ("BatchNorm folding", fold),
            ("PyTorch test accuracy (float32)", f"{card['test_acc_pytorch']:.2f}%")]
    if "fold_max_abs_diff" in card:
        rows.append(("folded vs unfolded, largest logit difference", f"{card['fold_max_abs_diff']:.2e}"))
    for name, info in card["files"].items():
        rows.append((f"`{name}`", f"{info['bytes'] / 1024:,.0f} KiB, test accuracy {info['test_acc']:.2f}%"
                     + (f", largest logit difference to PyTorch {info['max_abs_diff']:.2e} "
                        f"({'within' if info['parity'] else 'OUTSIDE'} {card['parity_tolerance']})"
                        if "max_abs_diff" in info else f", calibrated on the {info['calibration']}")))
    md = ["# Export card", "", "Written by `normlab export`; do not edit by hand.", "", "| field | value |",
          "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
    md += ["", f"Latency (median ms per call, {card['threads']} threads of {card.get('cpu', 'an unrecorded CPU')}, "
           f"torch {card['torch']}):", "",
           "| runtime | batch 1 | batch 256 | images/s at 256 |", "|---|---:|---:|---:|"]
    md += [f"| {k} | {v['1']:.3f} | {v['256']:.2f} | {256000 / v['256']:,.0f} |" for k, v in card["latency_ms"].items()]
    atomic_write_text(out / "export.md", "\n".join(md) + "\n")
