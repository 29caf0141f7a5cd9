"""Training and evaluation: data on the device, batched augmentation, channels_last, mixed precision,
per-epoch checkpoints. Readable in one sitting: ``train`` is the whole story.

Reproducibility: the initial weights come from ``seed``; every epoch re-seeds its own random streams
(shuffle order, augmentation, dropout) from (seed, epoch). A run resumed from its checkpoint therefore
draws exactly the numbers an uninterrupted run would, and ends with the same metrics.
"""
from __future__ import annotations

import contextlib
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import __version__, distributed
from .augment import augment
from .data import Cifar10, load_cifar10
from .errors import NormlabError
from .heap import keep_freed_memory
from .metrics import accuracy, confusion_matrix, per_class_accuracy
from .models import build_model, count_params
from .optim import MuonSGD, muon_weights
from .recipes import Recipe, get_recipe, lr_factor
from .runs import CONFIG, WEIGHTS, RunDir, atomic_write_bytes, atomic_write_json, read_json
from .whiten import whiten_stem

PARAM_BUDGET = 50_000
EPOCH_BUDGET = 20
# Evaluation batches: large ones are cheaper per image on accelerators, but not on the CPU, where glibc
# malloc maps every block over 32 MiB afresh and unmaps it when freed: at 1000 images each layer's output
# (65 MB for convmixer) cost its pages in page faults, and a pass took 3x as long as at 128 (S8: 1.8x),
# with the same logits to the bit. With freed memory kept (normlab.heap) 128 is still the faster size
# (convmixer-BN, float32, 4,000 images, one thread: 1.44 s against 2.08 s at 1000).
EVAL_BATCH = 1000
EVAL_BATCH_CPU = 128
SPLIT_SEED = 2024  # the validation split is the same for every run, whatever its seed


def eval_batch(device: torch.device) -> int:
    return EVAL_BATCH_CPU if device.type == "cpu" else EVAL_BATCH


@dataclass
class TrainConfig:
    arch: str = "s8"
    norm: str = "bn"
    recipe: str = "reference"
    seed: int = 0
    epochs: int | None = None       # overrides the recipe's
    batch_size: int | None = None   # overrides the recipe's
    lr: float | None = None         # overrides the recipe's
    recipe_overrides: dict = field(default_factory=dict)  # any other recipe field (the CLI's --set)
    train_size: int | None = None   # train on the first N training images (quick runs, tests)
    val_size: int = 0               # hold out N training images; evaluate on them instead of the test set
    device: str = "auto"
    precision: str = "auto"
    data_dir: str | None = None
    out: str | None = None
    budget: bool = True
    resume: bool = False
    overwrite: bool = False
    progress: bool = True
    compile: bool = False           # torch.compile the model
    sync_bn: bool = False           # under torchrun: BatchNorm statistics over the global batch (CUDA)

    def get_recipe(self) -> Recipe:
        explicit = {"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr}
        return get_recipe(self.recipe, **{**self.recipe_overrides,
                                          **{k: v for k, v in explicit.items() if v is not None}})

    def run_settings(self, recipe: Recipe, device: str, precision: str) -> dict:
        """What defines the run's numbers: saved in config.json and checked on --resume."""
        return {"arch": self.arch, "norm": self.norm, "seed": self.seed, "train_size": self.train_size,
                "val_size": self.val_size, "device": device, "precision": precision,
                "recipe": recipe.to_dict(), "budget": self.budget}

    def default_out(self) -> Path:
        return Path("runs") / f"{self.arch}-{self.norm}-{self.recipe}-seed{self.seed}"


# --- devices and precision -------------------------------------------------------------------------
def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise NormlabError("--device cuda: no CUDA GPU is visible to this torch build; use --device cpu")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise NormlabError("--device mps: Apple's MPS backend is not available here; use --device cpu")
    if name not in ("cpu", "cuda", "mps"):
        raise NormlabError(f"unknown device {name!r}; choose auto, cpu, cuda or mps")
    return torch.device(name)


def cpu_supports_bf16() -> bool:
    """True where oneDNN has native bfloat16 kernels (AVX512-BF16 or AMX); elsewhere bf16 is emulated
    and slower than float32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


# Measured on a 2-core AMD EPYC (AVX2, no AVX512-BF16): a bf16 convmixer-fr32-LN step ran at 17 images/s
# against 220 in float32 (docs/benchmarks.md). Warned, not refused: a run may want bf16's rounding.
EMULATED_BF16 = ("normlab: warning: this CPU has no native bfloat16 kernels (AVX512-BF16 or AMX), so bf16 is "
                 "emulated and over 10x slower than float32 here; use --precision fp32 (or auto, which picks it)")


def resolve_precision(name: str, device: torch.device) -> str:
    if name not in ("auto", "fp32", "bf16"):
        raise NormlabError(f"unknown precision {name!r}; choose auto, fp32 or bf16")
    if name != "auto":
        return name
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu":
        return "bf16" if cpu_supports_bf16() else "fp32"
    return "fp32"


def autocast(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_input(x_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> float32 in [0, 1], channels_last."""
    return x_uint8.float().div_(255).contiguous(memory_format=torch.channels_last)


def _generator(device: torch.device, seed: int) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g


def _epoch_seed(seed: int, epoch: int) -> int:
    return seed * 1_000_003 + epoch + 1


# --- evaluation --------------------------------------------------------------------------------------
def predict_logits(model: torch.nn.Module, x: torch.Tensor, device: torch.device, precision: str,
                   batch_size: int | None = None, flip_tta: bool = False) -> torch.Tensor:
    """Logits (float32, on CPU) for uint8 images ``x``. ``flip_tta``: the mean of the logits of each image
    and its mirror image (test-time augmentation; reported apart from single-view accuracy)."""
    plain, mirrored = _view_logits(model, x, device, precision, batch_size, mirror=flip_tta)
    return plain if mirrored is None else (plain + mirrored) / 2


@torch.inference_mode()
def _view_logits(model, x, device, precision, batch_size: int | None, mirror: bool):
    """Float32 CPU logits of the images as they are and, with ``mirror``, of their mirror images (else None).
    ``batch_size`` None: the device's evaluation batch."""
    batch_size = batch_size or eval_batch(device)
    was_training = model.training
    model.eval()
    plain, mirrored = [], []
    for i in range(0, len(x), batch_size):
        xb = to_input(x[i:i + batch_size].to(device))
        with autocast(device, precision):
            plain.append(model(xb).float().cpu())
            if mirror:
                mirrored.append(model(xb.flip(3)).float().cpu())
    model.train(was_training)
    if not plain:  # no images
        return torch.zeros(0, 10), torch.zeros(0, 10) if mirror else None
    return torch.cat(plain), torch.cat(mirrored) if mirror else None


def evaluate(model, x, y, device, precision, flip_tta: bool = False) -> dict:
    """Loss, accuracy, predictions and logits of single views; with ``flip_tta`` also ``acc_flip_tta``,
    the accuracy of each image's and its mirror's mean logits, from the same pass over the images."""
    logits, mirrored = _view_logits(model, x, device, precision, None, mirror=flip_tta)
    y = y.cpu()
    pred = logits.argmax(1)

    def percent_right(p: torch.Tensor) -> float:
        return 100.0 * float((p == y).float().mean())

    out = {"loss": float(F.cross_entropy(logits, y)), "acc": percent_right(pred), "pred": pred, "logits": logits}
    if mirrored is not None:
        out["acc_flip_tta"] = percent_right(((logits + mirrored) / 2).argmax(1))
    return out


# --- training ----------------------------------------------------------------------------------------
def split(data: Cifar10, train_size: int | None, val_size: int):
    """Training images (the first ``train_size``), and the held-out set: the last ``val_size`` training
    images of a fixed shuffle when asked for, the test set otherwise."""
    n = len(data.train_x)
    if val_size < 0 or val_size >= n:
        raise NormlabError(f"--val-size must be between 0 and {n - 1}, got {val_size}")
    train_x, train_y = data.train_x, data.train_y
    held = ("test", data.test_x, data.test_y)
    if val_size:
        order = torch.randperm(n, generator=_generator(torch.device("cpu"), SPLIT_SEED))
        held = ("val", train_x[order[-val_size:]], train_y[order[-val_size:]])
        train_x, train_y = train_x[order[:-val_size]], train_y[order[:-val_size]]
    if train_size is not None:
        if not 1 <= train_size <= len(train_x):
            raise NormlabError(f"--train-size must be between 1 and {len(train_x)}, got {train_size}")
        train_x, train_y = train_x[:train_size], train_y[:train_size]
    return train_x, train_y, held


def run_val_size(path: str | Path) -> int:
    """How many held-out images a ``--val-size`` run was judged on, from its run folder's config (or the
    folder beside its weights file); ``split(data, None, n)`` gives those very images back."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    config = folder / CONFIG
    if not config.is_file():
        raise NormlabError(f"{folder}: no {CONFIG} here, so its validation split is unknown; "
                           "pass the run folder of a --val-size run, or use --split test")
    val_size = read_json(config).get("val_size") or 0
    if not val_size:
        raise NormlabError(f"{folder} was trained on all training images (no --val-size), so it has no "
                           "validation split; use --split test")
    return val_size


def check_budget(params: int, epochs: int, arch: str, norm: str) -> None:
    if params > PARAM_BUDGET:
        raise NormlabError(f"{arch}/{norm} has {params:,} parameters, over the {PARAM_BUDGET:,} budget; "
                           "pass --no-budget to train it anyway")
    if epochs > EPOCH_BUDGET:
        raise NormlabError(f"{epochs} epochs is over the {EPOCH_BUDGET}-epoch budget; pass --no-budget to "
                           "train longer anyway")


def make_optimizer(model: torch.nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    matrices = muon_weights(model, recipe.muon_scope) if recipe.optimizer == "muon" else []  # Muon's share
    if recipe.optimizer == "muon" and not matrices:
        raise NormlabError("optimizer=muon with muon_scope=pointwise needs 1x1 convs to optimize (the "
                           "convmixer architectures have them); set muon_scope=convs or pick another optimizer")
    taken = {id(p) for p in matrices}
    params: list = [p for p in model.parameters() if id(p) not in taken]
    if not recipe.decay_norms:  # weight decay on conv and linear weights only, not on 1-d parameters
        params = [{"params": [p for p in params if p.ndim > 1]},
                  {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    if recipe.optimizer == "muon":
        return MuonSGD(matrices, params, lr=recipe.lr, muon_lr=recipe.muon_lr, momentum=recipe.momentum,
                       nesterov=recipe.nesterov, weight_decay=recipe.weight_decay,
                       muon_weight_decay=recipe.muon_weight_decay, muon_momentum=recipe.muon_momentum)
    return torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum,
                           nesterov=recipe.nesterov, weight_decay=recipe.weight_decay)


class WeightAverage:
    """An exponential moving average of ``model``'s weights and buffers (``Recipe.ema_epochs``), updated
    after every optimizer step. The first updates average over fewer steps ((1 + n) / (10 + n)), so the
    average is not anchored to the random initial weights."""

    def __init__(self, model: torch.nn.Module, ema_epochs: float, steps_per_epoch: int):
        from torch.optim.swa_utils import AveragedModel

        decay = 1.0 - 1.0 / max(1.0, ema_epochs * steps_per_epoch)

        def update(averaged: list, current: list, n_averaged: torch.Tensor) -> None:
            if not averaged[0].is_floating_point():  # BatchNorm's step counters
                torch._foreach_copy_(averaged, current)
                return
            n = float(n_averaged)
            torch._foreach_lerp_(averaged, current, 1.0 - min(decay, (1.0 + n) / (10.0 + n)))

        self.source = model
        self.averaged = AveragedModel(model, multi_avg_fn=update, use_buffers=True)

    @property
    def model(self) -> torch.nn.Module:
        return self.averaged.module

    def update(self) -> None:
        self.averaged.update_parameters(self.source)


def train_epoch(model, opt, recipe, x_all, y_all, *, epoch, seed, device, precision, bar,
                dist: distributed.Context = distributed.SINGLE, average: WeightAverage | None = None) -> dict:
    """One epoch. Under torchrun (``dist``) each rank trains on its slice of every global batch."""
    n = len(x_all)
    steps = math.ceil(n / recipe.batch_size)
    total_steps = steps * recipe.epochs
    torch.manual_seed(_epoch_seed(seed, epoch) * dist.world + dist.rank)  # dropout: a stream per rank
    gen = _generator(device, _epoch_seed(seed, epoch))  # shuffle and augmentation: the same on every rank
    perm = torch.randperm(n, generator=gen, device=device)
    model.train()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    for i in range(steps):
        idx = perm[i * recipe.batch_size:(i + 1) * recipe.batch_size]
        # Augment the whole global batch (cheap, uint8) so that every rank draws the same numbers.
        xb = augment(x_all[idx], gen, do_flip=recipe.flip, crop_pad=recipe.crop_pad, cutout_size=recipe.cutout)
        xb, yb = dist.shard(xb), dist.shard(y_all[idx])
        for group in opt.param_groups:
            group["lr"] = group.get("peak_lr", recipe.lr) * lr_factor(recipe, epoch * steps + i, total_steps, steps)
        with autocast(device, precision):
            logits = model(to_input(xb))
            loss = dist.batch_loss(logits.float(), yb, len(idx), recipe.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if average is not None:
            average.update()
        loss_sum += loss.detach() * (len(idx) / dist.world)  # this rank's summed loss
        correct += (logits.detach().argmax(1) == yb).sum()
        seen += len(yb)
        if bar is not None:
            bar.update(len(idx))
            if i % 20 == 0 or i == steps - 1:
                bar.set_postfix(loss=f"{float(loss_sum) / seen:.3f}", acc=f"{100.0 * float(correct) / seen:.2f}")
    loss_sum, correct = dist.sum(loss_sum), dist.sum(correct)
    if not torch.isfinite(loss_sum):
        raise NormlabError(f"training diverged at epoch {epoch + 1} (loss is not finite); lower --lr")
    return {"train_loss": float(loss_sum) / n, "train_acc": 100.0 * float(correct) / n}


def train(cfg: TrainConfig, data: Cifar10 | None = None, log=print) -> dict:
    """Train one model as ``cfg`` says, write its run folder, and return its results. Started by
    torchrun, train data-parallel over its processes (see ``normlab.distributed``)."""
    recipe = cfg.get_recipe()
    dist = distributed.from_env()
    dist.check_batch(recipe.batch_size)
    device = dist.device(resolve_device(cfg.device))
    if device.type == "cpu":
        keep_freed_memory()  # large activations stop page-faulting every step (normlab.heap)
    precision = resolve_precision(cfg.precision, device)
    if precision == "bf16" and device.type == "cpu" and not cpu_supports_bf16() and dist.is_main:
        print(EMULATED_BF16, file=sys.stderr)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.arch, cfg.norm)
    params = count_params(model)
    if cfg.budget:
        check_budget(params, recipe.epochs, cfg.arch, cfg.norm)
    distributed.init(dist, device)
    if not dist.is_main:
        log = _quiet  # rank 0 speaks for everyone
    data = data or dist.main_first(lambda: load_cifar10(cfg.data_dir))
    train_x, train_y, (held_name, held_x, held_y) = split(data, cfg.train_size, cfg.val_size)
    run = RunDir(cfg.out or cfg.default_out())
    settings = cfg.run_settings(recipe, device.type, precision)
    if dist.enabled:  # the dropout masks depend on the number of processes
        settings.update(processes=dist.world, sync_bn=cfg.sync_bn)

    def prepare():  # only once all input is valid; rank 0 owns the run folder
        resuming = run.prepare(settings, resume=cfg.resume, overwrite=cfg.overwrite,
                               defaults={"recipe": Recipe.field_defaults()})
        return run.load_checkpoint() if resuming else None

    state = dist.on_main(prepare)
    if state is None and recipe.stem_init == "whiten":  # a fresh run: from the training images only
        whiten_stem(model, train_x)
    train_x, train_y = train_x.to(device), train_y.to(device)
    model = model.to(device, memory_format=torch.channels_last)
    steps_per_epoch = math.ceil(len(train_x) / recipe.batch_size)
    average = WeightAverage(model, recipe.ema_epochs, steps_per_epoch) if recipe.ema_epochs else None
    train_model = dist.wrap(model, device, cfg.sync_bn)  # DDP under torchrun; shares parameters with ``model``
    opt = make_optimizer(model, recipe)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels
    step_model = torch.compile(train_model) if cfg.compile else train_model
    eval_model = model if dist.enabled else step_model  # a DDP forward is collective: rank 0 evaluates alone
    start = 0
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if average is not None:
            average.averaged.load_state_dict(state["average"])
        start = int(state["epoch"])
        if dist.is_main:
            run.truncate_metrics(start)
        log(f"resuming {run.path} after epoch {start}/{recipe.epochs}")
    if dist.enabled:
        log(f"data-parallel over {dist.world} processes ({torch.distributed.get_backend()}): global batch "
            f"{recipe.batch_size}, {recipe.batch_size // dist.world} per process")
    log(f"{cfg.arch}/{cfg.norm}: {params:,} parameters | recipe {recipe.name} | {len(train_x):,} training "
        f"images | device {device.type} | {precision} | run folder {run.path}")

    for epoch in range(start, recipe.epochs):
        t0 = time.perf_counter()
        bar = tqdm(total=len(train_x), desc=f"epoch {epoch + 1}/{recipe.epochs}", unit="img",
                   leave=False, disable=not (cfg.progress and dist.is_main), dynamic_ncols=True)
        row = train_epoch(step_model, opt, recipe, train_x, train_y, epoch=epoch, seed=cfg.seed,
                          device=device, precision=precision, bar=bar, dist=dist, average=average)
        bar.close()
        train_seconds = time.perf_counter() - t0
        if not dist.is_main:
            continue  # the other ranks go on to the next epoch and wait there for rank 0
        held = evaluate(eval_model if average is None else average.model, held_x, held_y, device, precision)
        row = {"epoch": epoch + 1, "lr": opt.param_groups[0]["lr"], **row,
               f"{held_name}_loss": held["loss"], f"{held_name}_acc": held["acc"]}
        if average is not None:  # the held-out figures above are the average's; these the raw weights'
            row[f"{held_name}_acc_raw"] = evaluate(eval_model, held_x, held_y, device, precision)["acc"]
        row.update(seconds=time.perf_counter() - t0, train_seconds=train_seconds,
                   images_per_second=len(train_x) / train_seconds)
        run.append_metrics(row)
        checkpoint = {"epoch": epoch + 1, "model": model.state_dict(), "optimizer": opt.state_dict()}
        if average is not None:
            checkpoint["average"] = average.averaged.state_dict()
        run.save_checkpoint(checkpoint)
        log(f"epoch {epoch + 1:>2}/{recipe.epochs}  loss {row['train_loss']:.4f}  train {row['train_acc']:.2f}%  "
            f"{held_name} loss {held['loss']:.4f}  {held_name} {held['acc']:.2f}%  "
            + (f"(raw weights {row[f'{held_name}_acc_raw']:.2f}%)  " if average is not None else "")
            + f"{row['images_per_second']:,.0f} img/s  {row['seconds']:.1f} s")

    return dist.on_main(lambda: finish(run, model, cfg, recipe, params, data, device, precision,
                                       (held_name, held_x, held_y), average))


def _quiet(*args, **kwargs) -> None:
    pass


def finish(run: RunDir, model, cfg: TrainConfig, recipe: Recipe, params: int, data: Cifar10,
           device: torch.device, precision: str, held: tuple, average: WeightAverage | None = None) -> dict:
    """Evaluate the final model on the held-out split, write weights, plots and (last) results.json. With
    weight averaging the final model is the average; the raw weights' accuracy is recorded beside it.

    ``held`` is ``(name, images, labels)`` from :func:`split`. A run that holds out a validation split is
    for choosing settings, so it is judged on that split alone: it never evaluates the test set, and its
    results, gallery and confusion matrix are the validation images' ("val_acc", "per_class_val_acc", ...).
    Only a run on all the training images reports the test set ("test_acc", ...)."""
    from . import report  # matplotlib is slow to import: only when a run finishes

    name, images, labels = held
    raw = model
    if average is not None:
        model = average.model
    rows = run.metrics()
    # The final figure is always computed in float32, as `normlab evaluate` and users deploying the
    # weights compute it, so a re-evaluation of the saved weights gives exactly the recorded number.
    final = evaluate(model, images, labels, device, "fp32", flip_tta=recipe.flip)
    cm = confusion_matrix(labels, final["pred"])
    best = max(rows, key=lambda r: r[f"{name}_acc"])
    train_seconds = sum(r["train_seconds"] for r in rows)
    results = {
        "arch": cfg.arch, "norm": cfg.norm, "recipe": recipe.name, "params": params, "epochs": recipe.epochs,
        "seed": cfg.seed, "train_acc": round(rows[-1]["train_acc"], 2), f"{name}_acc": round(final["acc"], 2),
        f"{name}_loss": round(final["loss"], 4),
        f"best_{name}_acc": round(best[f"{name}_acc"], 2), "best_epoch": best["epoch"],
        f"per_class_{name}_acc": dict(zip(data.classes, per_class_accuracy(cm))),
        "seconds": round(sum(r["seconds"] for r in rows), 1),
        "images_per_second": round(sum(r["images_per_second"] * r["train_seconds"] for r in rows)
                                   / train_seconds, 1),
        "device": device.type, "precision": precision, "threads": torch.get_num_threads(),
        "train_size": cfg.train_size, "val_size": cfg.val_size, "batch_size": recipe.batch_size,
        "lr": recipe.lr, "torch": torch.__version__, "normlab": __version__,
    }
    if torch.distributed.is_initialized():
        results["processes"] = torch.distributed.get_world_size()
    if recipe.flip:  # trained on mirror images: flip test-time augmentation, never the headline figure
        results[f"{name}_acc_flip_tta"] = round(final["acc_flip_tta"], 2)
    if average is not None:
        results[f"{name}_acc_raw"] = round(evaluate(raw, images, labels, device, "fp32")["acc"], 2)
    save_weights(model, run / WEIGHTS, cfg.arch, cfg.norm)
    report.run_plots(run.path, rows, name, images, labels, data.classes, final["pred"], cm)
    atomic_write_json(run / "confusion_matrix.json", {"classes": list(data.classes), "split": name,
                                                      "counts": cm.tolist()})
    atomic_write_json(run / "results.json", results)
    (run / "checkpoint.pt").unlink(missing_ok=True)
    return results


# --- weights -----------------------------------------------------------------------------------------
def save_weights(model, path: Path, arch: str, norm: str) -> None:
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(path, save(tensors, metadata={"arch": arch, "norm": norm, "normlab": __version__}))


def load_model(path: str | Path) -> torch.nn.Module:
    """A trained model from a run folder or a ``.safetensors`` weights file, in eval mode. It maps float
    images in [0, 1], (N, 3, 32, 32), to logits (N, 10)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    path = Path(path)
    if path.is_dir():
        path = path / WEIGHTS
    if not path.is_file():
        raise NormlabError(f"{path}: no weights file here; pass a run folder or a .safetensors file")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise NormlabError(f"{path}: not a readable safetensors file ({exc})") from None
    if "arch" not in meta or "norm" not in meta:
        raise NormlabError(f"{path}: weights carry no arch/norm metadata; they were not written by normlab")
    model = build_model(meta["arch"], meta["norm"])
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise NormlabError(f"{path}: weights do not fit {meta['arch']}/{meta['norm']} ({str(exc).splitlines()[0]})") from None
    return model.eval()
