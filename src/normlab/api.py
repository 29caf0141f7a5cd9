"""The public Python API: every command of the CLI as a plain function (the CLI only parses arguments and
calls these). Each training function takes a :class:`~normlab.config.TrainConfig` and/or its fields as
keyword arguments, resolves and checks every run before anything trains, and returns results dicts (the
``results.json`` of each run).

    import normlab
    r = normlab.train(arch="s8", norm="gn", train_size=2000, epochs=1, out="runs/try")
    normlab.compare(norms=("bn", "gn"), seeds=(0, 1), recipe="reference", out="runs/cmp")
    normlab.evaluate("runs/try")["test_acc"]

On the CPU the CLI also keeps freed memory for reuse (``normlab.heap.keep_freed_memory()``), which spares
large activations page faults at every step; library users who want the same call it once themselves.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

import torch

from .config import TrainConfig, resolve
from .errors import NormlabError
from .models import build_model, count_params
from .norms import register_norm
from .pretrained import load_pretrained
from .runs import WEIGHTS
from .weights import load_model

PathLike = str | os.PathLike


def _config(config: TrainConfig | None, fields: dict) -> TrainConfig:
    return TrainConfig.from_fields(config, **fields)


def train(config: TrainConfig | None = None, *, data=None, log=print, **fields) -> dict:
    """Train one model (``config`` and/or its fields, e.g. ``arch="s8", norm="gn", epochs=1``) into its
    run folder and return its results."""
    from .engine import train as run

    return run(resolve(_config(config, fields)), data=data, log=log)


def compare(norms: Iterable[str] = ("bn", "gn", "ln"), seeds: Iterable[int] = (0,), out: PathLike | None = None,
            config: TrainConfig | None = None, *, report_only: bool = False, log=print, **fields) -> list[dict]:
    """One run per (norm, seed) into ``out/<arch>-<norm>-seed<seed>`` and a comparison report in ``out``;
    finished runs are reused, interrupted ones resumed."""
    from .study import compare as run

    base = _config(config, fields)
    out = Path(out or f"runs/compare-{base.arch}-{base.recipe}")
    return run(base, list(norms), list(seeds), out, log=log, report_only=report_only)


def study_batch_size(norms: Iterable[str] = ("bn", "gn", "ln"),
                     batch_sizes: Iterable[int] = (2, 4, 8, 16, 32, 64, 128), out: PathLike | None = None,
                     config: TrainConfig | None = None, *, log=print, **fields) -> list[dict]:
    """Accuracy against batch size, one run per (batch size, norm), the learning rate scaled linearly
    (recipe lr x batch / 128); writes a report with a batch-size plot in ``out``."""
    from .study import batch_size_study

    base = _config(config, fields)
    if base.batch_size is not None:
        raise NormlabError("batch_size does not apply to a batch-size study; give batch_sizes")
    out = Path(out or f"runs/study-batch-size-{base.arch}-{base.recipe}")
    return batch_size_study(base, list(norms), list(batch_sizes), out, log=log)


def sweep(grid: dict[str, Sequence], out: PathLike = "runs/sweep", config: TrainConfig | None = None, *,
          backend: str = "local", address: str | None = None, cpus_per_task: float = 1,
          gpus_per_task: float = 0, log=print, **fields) -> list[dict]:
    """Every combination of ``grid`` (keys: arch, norm, recipe, batch_size, lr, seed, or the CLI's plural
    names, e.g. ``{"norms": ["bn", "gn"], "seeds": [0, 1]}``), locally or as Ray tasks."""
    from .sweeps import GRID_KEYS, sweep as run

    fields_of = {**{k: v[0] for k, v in GRID_KEYS.items()}, **{v[0]: v[0] for v in GRID_KEYS.values()}}
    unknown = [k for k in grid if k.replace("_", "-") not in fields_of and k not in fields_of]
    if unknown:
        raise NormlabError(f"unknown grid key {', '.join(unknown)}; choose from {', '.join(GRID_KEYS)}")
    grid = {fields_of.get(k, fields_of.get(k.replace("_", "-"))): list(v) for k, v in grid.items()}
    return run(_config(config, fields), grid, out, backend=backend, address=address,
               cpus_per_task=cpus_per_task, gpus_per_task=gpus_per_task, log=log)


def leaderboard(norms: Iterable[str] = ("bn", "gn", "ln"), protocols: Iterable[str] = ("s8",),
                out: PathLike = "runs/leaderboard", config: TrainConfig | None = None, *, seeds: Iterable[int] = (0, 1, 2),
                quick: bool = False, backend: str = "local", report_only: bool = False, log=print,
                **fields) -> list[dict]:
    """The norm leaderboard (normlab.leaderboards): every norm under one fixed protocol per architecture, at
    the recipe's batch and at batch 4, seeds 0-2; writes leaderboard.md/.html/.json in ``out`` and returns
    its rows. ``quick``: a few minutes' runs, labelled as such everywhere. ``fields``: device, precision,
    data_dir, progress (the protocol fixes the rest)."""
    from .leaderboards import leaderboard as run

    fixed = {"arch", "norm", "recipe", "seed", "epochs", "batch_size", "lr", "recipe_overrides", "train_size",
             "val_size", "out", "resume", "overwrite"} & set(fields)
    if fixed:
        raise NormlabError(f"the leaderboard's protocol fixes {', '.join(sorted(fixed))}; set only device, precision, "
                           "data_dir, progress or compile")
    if backend not in ("local", "ray"):
        raise NormlabError(f"unknown backend {backend!r}; choose local or ray")
    return run(list(norms), list(protocols), Path(out), seeds=tuple(seeds), quick=quick,
               base=_config(config, fields), backend=backend, report_only=report_only, log=log)


def report(runs: Iterable[PathLike], out: PathLike, title: str | None = None) -> list[dict]:
    """A comparison report (report.md, report.html, curves) of finished runs from any folders; their
    figures are redrawn from their data where missing."""
    from .study import report_runs

    return report_runs([Path(r) for r in runs], Path(out), title)


def _model(model, pretrained: str | None) -> torch.nn.Module:
    """A model given as an nn.Module, a run folder or weights file, or ``pretrained=NORM``: exactly one."""
    if (model is None) == (pretrained is None):
        raise NormlabError("pass either a run folder / .safetensors file or --pretrained NORM, not both"
                           if model is not None else "pass a run folder / .safetensors file, or --pretrained NORM")
    if pretrained is not None:
        return load_pretrained(pretrained)
    return model if isinstance(model, torch.nn.Module) else load_model(model)


def evaluate(model=None, *, pretrained: str | None = None, split: str = "test", data_dir: PathLike | None = None,
             device: str = "auto", flip_tta: bool = False) -> dict:
    """Accuracy, loss, per-class accuracy and confusion matrix of a model (an nn.Module, a run folder or a
    weights file, or ``pretrained="bn"``) on the test set, or with ``split="val"`` on the held-out training
    images a ``--val-size`` run was judged on. Always float32, as training records its final figure."""
    from .data import load_cifar10, split as split_data
    from .devices import resolve_device
    from .evaluation import evaluate as run
    from .metrics import confusion_matrix, per_class_accuracy
    from .runs import run_val_size

    if split not in ("test", "val"):
        raise NormlabError(f"unknown split {split!r}; choose test or val")
    if split == "val" and (pretrained or isinstance(model, torch.nn.Module)):
        raise NormlabError("--split val needs the run folder of a --val-size run (the pretrained models were "
                           "trained on all 50,000 training images); use --split test")
    val_size = run_val_size(model) if split == "val" else 0
    net = _model(model, pretrained)
    data = load_cifar10(data_dir)
    _, _, (name, x, y) = split_data(data, None, val_size)  # val_size 0: the test set
    dev = resolve_device(device)
    r = run(net.to(dev), x, y, dev, "fp32", flip_tta=flip_tta)
    cm = confusion_matrix(y, r["pred"])
    out = {f"{name}_acc": round(r["acc"], 2), f"{name}_loss": round(r["loss"], 4), "images": len(y),
           f"per_class_{name}_acc": dict(zip(data.classes, per_class_accuracy(cm))), "confusion_matrix": cm.tolist()}
    if flip_tta:
        out[f"{name}_acc_flip_tta"] = round(r["acc_flip_tta"], 2)
    return out


def predict(model=None, images: Iterable[PathLike] | torch.Tensor = (), *, pretrained: str | None = None,
            top: int = 3) -> list[list[tuple[str, float]]]:
    """The ``top`` classes and their probabilities for each image: image files (any size, resized to 32x32)
    or a uint8 tensor (N, 3, 32, 32)."""
    from .data import CLASSES, load_image

    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise NormlabError(f"--top must be at least 1, got {top!r}")
    net = _model(model, pretrained).eval()
    if not isinstance(images, torch.Tensor):
        images = [load_image(p) for p in images]
        if not images:
            raise NormlabError("pass at least one image to classify")
    x = images if isinstance(images, torch.Tensor) else torch.stack(images)
    if x.dtype != torch.uint8 or x.dim() != 4 or tuple(x.shape[1:]) != (3, 32, 32):
        raise NormlabError(f"images must be uint8 of shape (N, 3, 32, 32), got {x.dtype} {tuple(x.shape)}")
    with torch.inference_mode():
        probs = net(x.float() / 255).softmax(1)
    best = probs.topk(min(top, len(CLASSES)), dim=1)
    return [[(CLASSES[i], float(p)) for p, i in zip(ps.tolist(), ix.tolist())]
            for ps, ix in zip(best.values, best.indices)]


def _named_models(models: Iterable, pretrained: Iterable[str]) -> tuple[dict, dict]:
    """Models by display name, and where each came from: run folders / weights files and pretrained norms."""
    import hashlib

    from .pretrained import weights_path

    nets, sources = {}, {}

    def digest(weights: Path | torch.nn.Module) -> str:  # sources name the weights: a report sees them change
        h = hashlib.sha256()
        if isinstance(weights, torch.nn.Module):
            for k, v in weights.state_dict().items():
                h.update(k.encode() + v.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        else:
            h.update(weights.read_bytes())
        return h.hexdigest()[:12]

    def add(name, net, source):
        base, k = name, 2
        while name in nets:
            name, k = f"{base}-{k}", k + 1
        nets[name], sources[name] = net, source

    for m in models:
        if isinstance(m, torch.nn.Module):
            add(type(m).__name__.lower(), m, f"a model passed in Python (weights sha256 {digest(m)}...)")
            continue
        p = Path(m)
        net = load_model(p)  # first: it says what is wrong with a path that holds no model
        weights = p / WEIGHTS if p.is_dir() else p
        add(p.parent.name if p.suffix == ".safetensors" else p.name, net, f"{p} (weights sha256 {digest(weights)}...)")
    for norm in pretrained:
        add(f"pretrained-{norm}", load_pretrained(norm),
            f"normlab pretrained {norm} (weights sha256 {digest(weights_path(norm))}...)")
    if not nets:
        raise NormlabError("pass a run folder / .safetensors file, or --pretrained NORM")
    return nets, sources


def robustness(models: Iterable = (), *, pretrained: Iterable[str] = (), out: PathLike = "runs/robustness",
               corruptions: Iterable[str] | None = None, severities: Iterable[int] = (1, 2, 3, 4, 5),
               adapt_bn: bool = False, limit: int | None = None, seed: int = 0, data_dir: PathLike | None = None,
               device: str = "auto", overwrite: bool = False, update: bool = False, report_only: bool = False,
               log=print) -> dict:
    """Accuracy of each model (run folders, weights files, nn.Modules, and/or ``pretrained=("bn", ...)``) on
    CIFAR-10-C style corruptions of the test set (normlab.corruptions), each at severities 1-5, with
    ``adapt_bn`` also after re-estimating BatchNorm statistics on each corrupted set; writes robustness.md,
    .html, .json and heat maps into ``out`` and returns the figures. A report already in ``out`` is kept
    unless ``overwrite`` (measure every model again) or ``update`` (a report of these models that takes the
    figures of those the old one holds with the same weights and settings). ``report_only``: redraw the
    report in ``out`` from its robustness.json, measuring nothing."""
    from .corruptions import CORRUPTIONS
    from .robust import rewrite, run

    if report_only:
        return rewrite(Path(out), data_dir, log)
    nets, sources = _named_models(models, pretrained)
    return run(nets, sources, Path(out), corruptions=tuple(corruptions or CORRUPTIONS), severities=tuple(severities),
               adapt_bn=adapt_bn, limit=limit, seed=seed, data_dir=data_dir, device=device, overwrite=overwrite,
               update=update, log=log)


def export(model=None, *, pretrained: str | None = None, format: str = "onnx", int8: bool = False,
           fold: bool = True, out: PathLike | None = None, calibration_images: int = 1000,
           data_dir: PathLike | None = None, overwrite: bool = False, log=print) -> dict:
    """Export a model (run folder, weights file or ``pretrained="gn"``) to ONNX or TorchScript, BatchNorm
    folded where possible, optionally also int8-quantized (ONNX Runtime, calibrated on training images),
    into ``out`` (default ``runs/export/<name>``) with an export card: sizes, parity with PyTorch, test
    accuracy of each file and latency. Returns the card."""
    from .deploy import export_model

    nets, sources = _named_models([] if model is None else [model], [] if pretrained is None else [pretrained])
    if len(nets) != 1:
        raise NormlabError("pass either a run folder / .safetensors file or --pretrained NORM, not both")
    (name, net), = nets.items()
    return export_model(net, sources[name], Path(out or Path("runs/export") / name), fmt=format, int8=int8,
                        fold=fold, calibration_images=calibration_images, data_dir=data_dir, overwrite=overwrite,
                        log=log)


__all__ = ["TrainConfig", "build_model", "compare", "count_params", "evaluate", "export", "leaderboard", "load_model",
           "load_pretrained", "predict", "register_norm", "report", "robustness", "study_batch_size", "sweep",
           "train"]
