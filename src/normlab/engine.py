"""The training loop: data on the device, batched augmentation, channels_last, mixed precision, a
checkpoint after every epoch. ``train`` is the whole story of one run.

Reproducibility: the initial weights come from ``seed``; every epoch re-seeds its own random streams
(shuffle order, augmentation, dropout) from (seed, epoch). A run resumed from its checkpoint therefore
draws exactly the numbers an uninterrupted run would, and ends with the same metrics.
"""
from __future__ import annotations

import contextlib
import math
import sys
import time

import torch
from tqdm.auto import tqdm

from . import devices, distributed
from .version import __version__
from .augment import alternating_flips, augment, downscale, window
from .config import RunSpec, TrainConfig, resolve
from .data import Cifar10, load_cifar10, split
from .devices import (EMULATED_BF16, autocast, cpu_description, resolve_compile, resolve_device, resolve_precision,
                      to_input)
from .errors import NormlabError
from .evaluation import evaluate
from .metrics import confusion_matrix, per_class_accuracy
from .models import build_model
from .optim import WeightAverage, make_optimizer
from .recipes import IMAGE_SIDE, Recipe, lr_factor
from .runs import RunDir, atomic_write_json
from .weights import save_weights
from .whiten import whiten_stem


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch + 1) % 2**63


def train_epoch(model, opt, recipe: Recipe, x_all, y_all, *, epoch, seed, device, precision, bar,
                dist: distributed.Context = distributed.SINGLE, average: WeightAverage | None = None) -> dict:
    """One epoch. Under torchrun (``dist``) each rank trains on its slice of every global batch."""
    n = len(x_all)
    steps = math.ceil(n / recipe.batch_size)
    total_steps = steps * recipe.epochs
    torch.manual_seed((_epoch_seed(seed, epoch) * dist.world + dist.rank) % 2**63)  # dropout: a stream per rank
    gen = torch.Generator(device=device)
    gen.manual_seed(_epoch_seed(seed, epoch))  # shuffle and augmentation: the same on every rank
    perm = torch.randperm(n, generator=gen, device=device)
    side = recipe.image_size(epoch)  # progressive resizing
    size = side if side < IMAGE_SIDE else None
    crop_to, scale_to = (size, None) if recipe.small_mode == "crop" else (None, size)
    flips = alternating_flips(n, seed, epoch, device) if recipe.flip and recipe.flip_mode == "alternate" else None
    model.train()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    for i in range(steps):
        idx = perm[i * recipe.batch_size:(i + 1) * recipe.batch_size]
        # Augment the whole global batch (cheap, uint8) so that every rank draws the same numbers.
        xb = augment(x_all[idx], gen, do_flip=recipe.flip, crop_pad=recipe.crop_pad, cutout_size=recipe.cutout,
                     flip_mask=None if flips is None else flips[idx])
        if crop_to is not None:
            xb = window(xb, crop_to, gen)
        xb, yb = dist.shard(xb), dist.shard(y_all[idx])
        factor = lr_factor(recipe, epoch * steps + i, total_steps, steps)
        for group in opt.param_groups:
            group["lr"] = group.get("peak_lr", recipe.lr) * factor
        with autocast(device, precision):
            logits = model(to_input(xb) if scale_to is None else downscale(to_input(xb), scale_to))
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


def train(spec: RunSpec | TrainConfig, data: Cifar10 | None = None, log=print) -> dict:
    """Train one run, write its run folder, and return its results. ``spec`` comes from
    ``normlab.config.resolve`` (a TrainConfig is resolved here). Started by torchrun, train data-parallel
    over its processes (see ``normlab.distributed``)."""
    spec = spec if isinstance(spec, RunSpec) else resolve(spec)
    cfg, recipe = spec.config, spec.recipe
    dist = distributed.from_env()
    dist.check_batch(recipe.batch_size)
    device = dist.device(resolve_device(cfg.device))
    precision = resolve_precision(cfg.precision, device, cfg.arch, cfg.norm)
    if precision == "bf16" and device.type == "cpu" and not devices.cpu_supports_bf16() and dist.is_main:
        print(EMULATED_BF16, file=sys.stderr)
    distributed.init(dist, device)
    if not dist.is_main:
        log = _quiet  # rank 0 speaks for everyone
    data = data or dist.main_first(lambda: load_cifar10(cfg.data_dir))
    train_x, train_y, held = split(data, cfg.train_size, cfg.val_size)
    run = RunDir(spec.out)
    settings = spec.settings(device.type, precision)
    if dist.enabled:  # the dropout masks depend on the number of processes
        settings.update(processes=dist.world, sync_bn=cfg.sync_bn)
    with run.locked() if dist.is_main else contextlib.nullcontext():  # rank 0 owns the run folder
        try:
            return _train(spec, run, settings, data, train_x, train_y, held, device, precision, dist, log)
        except BaseException:
            run.discard()  # an --overwrite replacement that failed leaves nothing behind
            raise


def _train(spec: RunSpec, run: RunDir, settings: dict, data: Cifar10, train_x, train_y, held, device, precision,
           dist: distributed.Context, log) -> dict:
    cfg, recipe = spec.config, spec.recipe

    def prepare():
        resuming = run.prepare(settings, resume=cfg.resume, overwrite=cfg.overwrite, same=_as_saved_now)
        return run.load_checkpoint() if resuming else None

    state = dist.on_main(prepare)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.arch, cfg.norm)
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
    per_process = recipe.batch_size // dist.world
    compiled = resolve_compile(cfg.compile, device, cfg.arch, cfg.norm, precision, per_process)
    # Compiled for the full batches only (one static graph); the epoch's last, smaller batch and the
    # evaluations run the same model eagerly, which spares a recompile for every other shape.
    step_model = FullBatchCompiled(train_model, per_process) if compiled else train_model
    eval_model = model if dist.enabled else train_model  # a DDP forward is collective: rank 0 evaluates alone
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
            f"{recipe.batch_size}, {per_process} per process")
    log(f"{cfg.arch}/{cfg.norm}: {spec.params:,} parameters | recipe {spec.recipe_label} | {len(train_x):,} "
        f"training images | device {device.type} | {precision}{' | compiled' if compiled else ''} | "
        f"run folder {run.path}")
    seen, macs = spec.train_compute(len(train_x))
    resized = [(side, n) for side, n in recipe.stages() if side != IMAGE_SIDE]
    stages = [f"{spec.macs_at[side] / 1e6:.1f} M at {side}x{side} px in {'the next' if i else 'the first'} {n} "
              f"epochs" for i, (side, n) in enumerate(resized)]
    small = f" ({', '.join(stages)})" if stages else ""
    log(f"training compute: {spec.macs / 1e6:.1f} M multiply-adds per image{small} x {seen:,} images = "
        f"{macs / 1e12:.2f} T multiply-adds (forward passes)")

    held_name, held_x, held_y = held
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
        result = evaluate(eval_model if average is None else average.model, held_x, held_y, device, precision)
        row = {"epoch": epoch + 1, "lr": opt.param_groups[0]["lr"], **row,
               f"{held_name}_loss": result["loss"], f"{held_name}_acc": result["acc"]}
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
            f"{held_name} loss {result['loss']:.4f}  {held_name} {result['acc']:.2f}%  "
            + (f"(raw weights {row[f'{held_name}_acc_raw']:.2f}%)  " if average is not None else "")
            + f"{row['images_per_second']:,.0f} img/s  {row['seconds']:.1f} s")

    return dist.on_main(lambda: finish(run, model, spec, data, device, precision, held, len(train_x),
                                          average, compiled))


# Inductor turns reductions over at most 8 elements into unrolled arithmetic and inlines it wherever the
# result is used. GroupNorm's group means (over 4 or 8 channels) then ended up inside the big elementwise
# loops of the backward pass, indexed by channel // group size, which keeps those loops from vectorizing:
# S8-GN's 16x16 and 8x8 norm backward kernels took 2.8 and 2.3 ms per step instead of 1.0 and 0.8.
COMPILE_OPTIONS = {"unroll_reductions_threshold": 1}


class FullBatchCompiled(torch.nn.Module):
    """``model`` under torch.compile for batches of ``batch_size``, eager for any other size."""

    def __init__(self, model: torch.nn.Module, batch_size: int):
        super().__init__()
        self.model, self.batch_size = model, batch_size
        self.compiled = torch.compile(model, dynamic=False, options=COMPILE_OPTIONS)

    def forward(self, x):
        return (self.compiled if len(x) == self.batch_size else self.model)(x)


def _as_saved_now(saved: dict) -> dict:
    """A saved config.json as this normlab would write it for the same run: its recipe through Recipe
    (fields added since, with the values that keep the old behaviour; an old free-text description gone)."""
    if isinstance(saved.get("recipe"), dict):
        try:
            saved = {**saved, "recipe": Recipe.from_dict(saved["recipe"]).to_dict()}
        except (NormlabError, TypeError):
            pass  # not a recipe this normlab can read: the comparison reports it as different
    return saved


def _quiet(*args, **kwargs) -> None:
    pass


def finish(run: RunDir, model, spec: RunSpec, data: Cifar10, device: torch.device, precision: str,
           held: tuple, train_images: int, average: WeightAverage | None = None,
           compiled: bool = False) -> dict:
    """Evaluate the final model on the held-out split, write weights, plots and (last) results.json. With
    weight averaging the final model is the average; the raw weights' accuracy is recorded beside it.

    ``held`` is ``(name, images, labels)`` from :func:`normlab.data.split`. A run that holds out a
    validation split is for choosing settings, so it is judged on that split alone: it never evaluates the
    test set. Only a run on all the training images reports the test set ("test_acc", ...)."""
    from .reports import run_plots  # matplotlib is slow to import: only when a run finishes

    cfg, recipe = spec.config, spec.recipe
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
    seen, train_macs = spec.train_compute(train_images)
    results = {
        "arch": cfg.arch, "norm": cfg.norm, "recipe": recipe.name, "recipe_label": spec.recipe_label,
        "params": spec.params, "epochs": recipe.epochs, "forward_macs": spec.macs,
        "train_images_seen": seen, "train_macs": train_macs,
        "seed": cfg.seed, "train_acc": round(rows[-1]["train_acc"], 2), f"{name}_acc": round(final["acc"], 2),
        f"{name}_loss": round(final["loss"], 4),
        f"best_{name}_acc": round(best[f"{name}_acc"], 2), "best_epoch": best["epoch"],
        f"per_class_{name}_acc": dict(zip(data.classes, per_class_accuracy(cm))),
        "seconds": round(sum(r["seconds"] for r in rows), 1),
        "images_per_second": round(sum(r["images_per_second"] * r["train_seconds"] for r in rows)
                                   / train_seconds, 1),
        "device": device.type, "precision": precision, "compiled": compiled, "threads": torch.get_num_threads(),
        "cpu": cpu_description()["model"] if device.type == "cpu" else None,
        "train_size": cfg.train_size, "val_size": cfg.val_size, "batch_size": recipe.batch_size,
        "lr": recipe.lr, "torch": torch.__version__, "normlab": __version__,
    }
    if torch.distributed.is_initialized():
        results["processes"] = torch.distributed.get_world_size()
    if recipe.flip:  # trained on mirror images: flip test-time augmentation, never the headline figure
        results[f"{name}_acc_flip_tta"] = round(final["acc_flip_tta"], 2)
    if average is not None:
        results[f"{name}_acc_raw"] = round(evaluate(raw, images, labels, device, "fp32")["acc"], 2)
    save_weights(model, run / "model.safetensors", cfg.arch, cfg.norm)
    run_plots(run.work, rows, name, images, labels, data.classes, final["pred"], cm)
    atomic_write_json(run / "confusion_matrix.json", {"classes": list(data.classes), "split": name,
                                                      "counts": cm.tolist()})
    atomic_write_json(run / "results.json", results)
    (run / "checkpoint.pt").unlink(missing_ok=True)
    run.commit()
    return results
