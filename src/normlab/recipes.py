"""Training recipes: every hyperparameter in one place, each with the reason it has its value.

A recipe is a plain frozen dataclass; the CLI can override epochs, batch size and learning rate.
"""
from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, fields, replace

from .errors import NormlabError


@dataclass(frozen=True)
class Recipe:
    name: str
    epochs: int = 20             # the study's budget
    batch_size: int = 128        # the reference's
    lr: float = 0.01             # peak learning rate
    optimizer: str = "sgd"       # sgd | adamw (betas 0.9/0.999, weight decay decoupled from the gradient;
                                 # momentum and nesterov then do not apply) | muon (Muon on the pointwise
                                 # convs at muon_lr, SGD as above on everything else; normlab.optim)
    muon_lr: float = 0.05        # optimizer=muon: peak learning rate of the pointwise convs (same schedule)
    muon_weight_decay: float = 0.0  # optimizer=muon: decoupled weight decay of the pointwise convs (each
                                 # step w -= lr * wd * w). 0: a norm follows each of them, so their scale
                                 # does not change the function; it grows with Muon's steps, which shrinks
                                 # the step relative to the weights as training goes on
    muon_momentum: float = 0.95  # optimizer=muon: Muon's momentum (Nesterov), its authors' default; the
                                 # other parameters keep `momentum`
    muon_scope: str = "pointwise"  # optimizer=muon: which weights Muon trains. pointwise: the dense 1x1
                                 # convs (Muon's hidden matrices); convs: every conv weight, the depthwise
                                 # 3x3 and the full-resolution stem too (each followed by a norm)
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    decay_norms: bool = True     # weight decay on norm scales/shifts and biases (every 1-d parameter) too;
                                 # False: on conv and linear weights only ("no bias decay")
    schedule: str = "constant"   # constant | onecycle (linear warm-up then linear decay to 0) | cosine
    warmup_epochs: float = 0.0   # onecycle only
    label_smoothing: float = 0.0
    flip: bool = False           # random horizontal flip
    crop_pad: int = 0            # random translation by up to this many pixels (reflect padding)
    cutout: int = 0              # side of a random square filled with the mean colour
    stem_init: str = "default"   # default (PyTorch's) | whiten: the first conv's filters from the principal
                                 # directions of the training images' patches, +-, each scaled to unit
                                 # variance (normlab.whiten; airbench's first-layer init)
    ema_epochs: float = 0.0      # weight averaging: an exponential moving average of the weights (and
                                 # norm statistics) with this time constant in epochs, updated every
                                 # step; evaluated and saved instead of the raw weights. 0: off
    description: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def field_defaults(cls) -> dict:
        """Each field's default: what a run saved before that field existed did (fields are added with
        the default that keeps the old behaviour), so resuming it can fill them in."""
        return {f.name: f.default for f in fields(cls) if f.default is not MISSING}


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        # The reference study exactly: SGD lr 0.01 momentum 0.9, batch 128, constant lr, no augmentation.
        Recipe("reference", description="the reference study: SGD 0.01, momentum 0.9, batch 128, "
                                        "constant learning rate, no augmentation"),
        # The smallest change to the reference that lets every norm finish above 70% at its *final*
        # epoch. Under the reference's constant 0.01, S8 is still improving at epoch 20 (under-fitted,
        # not over-fitted: training accuracy stays below held-out accuracy), so the change is a larger
        # step that is annealed: peak 0.05, decayed linearly to 0 over the run. Chosen against the
        # reference recipe on a 5,000-image validation split (results/recipe-selection/), not on the test set.
        Recipe("reference-decay", lr=0.05, schedule="linear-decay",
               description="the reference recipe with learning rate 0.05 decayed linearly to 0 "
                           "over the 20 epochs"),
        # reference-decay left S8-LN 0.14 points under 70% on the test set. One more change, chosen on the
        # same 5,000-image validation split (S8-LN, seed 4): weight decay 5e-4 (val 72.30% against 70.34%
        # without it); a one-cycle schedule with warm-up and peak 0.1 instead was worse (69.90%). With
        # norm layers after every conv, weight decay mostly keeps the weight norms small, which raises
        # the effective learning rate late in training (van Laarhoven, 2017).
        Recipe("reference-decay-wd", lr=0.05, schedule="linear-decay", weight_decay=5e-4,
               description="reference-decay plus weight decay 5e-4"),
        # Accuracy within 20 epochs (the "accuracy per parameter" issue). STARTING POINTS: every value
        # below is a standard choice for short CIFAR-10 schedules; change them only on evidence from the
        # 5,000-image validation split (--val-size 5000). Compared there since (8-epoch proxies, seed 0,
        # results/arch-selection/proxy-8ep): the peak (0.2 beat 0.05 on resnet8-BN, 0.1 suits GN/LN),
        # batch 128 (fast-b128: better for GN/LN, not BN), weight decay 1e-4 (worse for BN), label
        # smoothing 0 and crop pad 2 (each about a point better for BN at 8 epochs; crop pad 2
        # gave nothing at 20: fast-crop2).
        Recipe("fast",
               epochs=20,              # the budget; the schedule is built to end exactly there
               batch_size=256,         # BN statistics are stable at 256, still ~196 steps per epoch (3,920
                                       # in all: short schedules need steps), and larger batches use the
                                       # CPU's bf16 matrix units better than 128
               lr=0.2,                 # peak; the usual 0.1 per 128 images for SGD on CIFAR ResNets, scaled
                                       # linearly to batch 256. GN/LN may want less (validation)
               momentum=0.9,           # standard
               nesterov=True,          # slightly better than heavy-ball on short schedules, free
               weight_decay=5e-4,      # the CIFAR-ResNet standard; with norms it mainly keeps the
                                       # effective learning rate up as the weights would otherwise grow
               schedule="onecycle",    # linear warm-up, then linear decay to 0 at the last step:
                                       # the best-known shape for fixed short budgets
               warmup_epochs=2.0,      # 10% of the run: lets a high peak rate start safely, which
                                       # matters most for GN/LN (no batch statistics to absorb it)
               label_smoothing=0.1,    # soft targets: a cheap regularizer that gains ~0.5 point
               flip=True,              # random horizontal flip: CIFAR classes are mirror-symmetric
               crop_pad=4,             # random translation by up to 4 px (reflect padding), the standard
                                       # CIFAR augmentation
               cutout=0,               # off: a net this small under-fits in 20 epochs; candidate only
               description="accuracy within 20 epochs: batch 256, SGD nesterov 0.2 peak one-cycle (2 "
                           "warm-up epochs), weight decay 5e-4, label smoothing 0.1, crop + flip (compared "
                           "against its alternatives on the validation split: docs/architectures.md)"),
    )
}
# `fast` at batch 128: twice the optimizer steps for the same 20 epochs. Chosen on the 5,000-image
# validation split with convmixer-LN (8-epoch proxies, seed 0; results/arch-selection/proxy-8ep): batch 128
# at peak 0.05 reached 74.84% val against 71.22% for `fast` (batch 256, peak 0.1, LN's choice); batch 64 at
# 0.025 gave 74.50%, no better for twice the steps. The peak is LN's 0.1 at 256 scaled linearly to 128.
# BN gained nothing from batch 128 in the same proxy (79.62 vs 79.96, and slower): BN keeps `fast`. GN
# gained 1.7 points at 0.05 (75.84 vs 74.14); on full runs, seeds 0-2, 84.26 vs 83.30 test. Everything else
# is `fast`'s.
RECIPES["fast-b128"] = replace(
    RECIPES["fast"], name="fast-b128", batch_size=128, lr=0.05,
    description="the fast recipe at batch 128 (twice the steps), peak lr 0.05: SGD nesterov one-cycle (2 "
                "warm-up epochs), weight decay 5e-4, label smoothing 0.1, crop + flip")

# `fast` with random translation by up to 2 px instead of 4: less augmentation for a net that under-fits in 20
# epochs (train accuracy stays below held-out accuracy under `fast`). Chosen on the 5,000-image validation
# split (8-epoch proxies, convmixer-BN, seed 0; results/arch-selection/proxy-8ep): crop pad 2 reached 81.08%
# val against 79.96% for `fast`; label smoothing 0 gave 81.06%, both together 80.74% (so one change only),
# weight decay 1e-4 78.34%. Everything else is `fast`'s. On all the data for 20 epochs (seed 0) it did NOT
# carry over: 86.57% test against 86.77% with `fast`, with more training accuracy (89.00 against 87.73).
RECIPES["fast-crop2"] = replace(
    RECIPES["fast"], name="fast-crop2", crop_pad=2,
    description="the fast recipe with random translation by up to 2 px instead of 4: batch 256, SGD nesterov "
                "0.2 peak one-cycle (2 warm-up epochs), weight decay 5e-4, label smoothing 0.1, crop + flip")

# Weight averaging: `fast` and `fast-b128` with an exponential moving average of the weights over about one
# epoch (``ema_epochs=1``), evaluated and saved instead of the raw weights. Training itself is unchanged (the
# same seed draws the same numbers), so one run on the 5,000-image validation split compares both, image for
# image (results/weight-averaging, 20 epochs, seed 0): convmixer-s16-BN with `fast` 87.34% val against
# 87.14% for its raw weights, convmixer-s16-LN with `fast-b128` 84.00% against 83.82%. Small gains, within
# a seed's noise; mid-run the average leads by 4-6 points, so it mostly smooths what the schedule's decay
# to zero already smooths.
RECIPES["fast-ema"] = replace(
    RECIPES["fast"], name="fast-ema", ema_epochs=1.0,
    description="the fast recipe with weight averaging (an exponential moving average of the weights over "
                "about one epoch): batch 256, SGD nesterov 0.2 peak one-cycle (2 warm-up epochs), weight "
                "decay 5e-4, label smoothing 0.1, crop + flip")
RECIPES["fast-b128-ema"] = replace(
    RECIPES["fast-b128"], name="fast-b128-ema", ema_epochs=1.0,
    description="the fast-b128 recipe with weight averaging (an exponential moving average of the weights "
                "over about one epoch): batch 128, SGD nesterov 0.05 peak one-cycle (2 warm-up epochs), "
                "weight decay 5e-4, label smoothing 0.1, crop + flip")

# `fast-b128` with Muon on the pointwise 1x1 convs (SGD on everything else, as before): the best GN and LN
# recipe so far, the same as `--recipe fast-b128 --set optimizer=muon --set muon_lr=0.1 --set
# muon_weight_decay=0.01`. Chosen on the 5,000-image validation split (20 epochs, seed 0, weight average /
# raw weights; results/muon): Muon at muon_lr 0.1 lifted convmixer-fr32-LN from 85.40 / 85.62 to 87.48 /
# 87.60 (0.05 tied, 0.2 was worse); decoupled weight decay 0.01 on Muon's matrices, which keeps their norm
# from growing with every step, lifted it to 88.18 / 88.24 (0.02: 87.24 / 87.16), and convmixer-s16-GN from
# 86.46 / 86.54 to 87.46 / 87.62 (convmixer-fr32-GN: 88.22 / 88.18; on all the data, seeds 0-2, 88.39 ±
# 0.09 test, results/convmixer-fr32-gn-fast-b128-muon-wd0.01). BN (at `fast`'s batch 256) gained nothing
# from Muon without decay (87.34 against 87.34) and 0.5 / 0.4 with it (87.86 / 87.70): BN's preset is
# `fast-muon` below.
MUON_SETTINGS = dict(optimizer="muon", muon_lr=0.1, muon_weight_decay=0.01)  # chosen above; fast-muon too
RECIPES["fast-b128-muon"] = replace(
    RECIPES["fast-b128"], name="fast-b128-muon", **MUON_SETTINGS,
    description="the fast-b128 recipe with Muon on the pointwise 1x1 convs (peak 0.1, decoupled weight "
                "decay 0.01) and SGD nesterov 0.05 peak one-cycle on the rest: batch 128, 2 warm-up "
                "epochs, weight decay 5e-4, label smoothing 0.1, crop + flip")

# `fast` (batch 256, BN's) with the same Muon settings: the best BN recipe so far, the same as `--recipe fast
# --set optimizer=muon --set muon_lr=0.1 --set muon_weight_decay=0.01`. On the validation split
# (convmixer-s16-BN, seed 0, fast-ema) 87.86 / 87.70 against 87.34 / 87.14 with SGD; on all the data,
# seeds 0-2, 87.98 ± 0.11 test against 86.97 ± 0.07 (results/convmixer-s16-fast-muon-wd0.01). Batch 128
# was not run for BN with Muon; without Muon it gave BN nothing.
RECIPES["fast-muon"] = replace(
    RECIPES["fast"], name="fast-muon", **MUON_SETTINGS,
    description="the fast recipe with Muon on the pointwise 1x1 convs (peak 0.1, decoupled weight decay "
                "0.01) and SGD nesterov 0.2 peak one-cycle on the rest: batch 256, 2 warm-up epochs, "
                "weight decay 5e-4, label smoothing 0.1, crop + flip")


# `fast-b128-muon` with Muon on every conv weight (``muon_scope=convs``: the depthwise 3x3 convs and the first
# 3x3 conv as (out, in*k*k) matrices, beside the pointwise 1x1 convs), SGD on the norms, biases and head:
# the same as `--recipe fast-b128-muon --set muon_scope=convs`. On the validation split (convmixer-fr32-LN,
# fast-b128-ema, seeds 0 and 1, weight average / raw weights; results/muon) 88.76 / 88.94 and 88.84 / 88.78
# against the pointwise baseline's 88.18 / 88.24 and 87.22 / 87.38 at the same seeds (two-seed means 88.80
# / 88.81 against 87.70 / 87.81; the rule set before seed 1 was +0.2 on both). On all the data, seeds 0-2,
# 88.72 ± 0.09 test against 87.77 ± 0.14 (results/convmixer-fr32-ln-fast-b128-muon-convs), LN's target met.
# About 10% slower per image (724-728 against 856-876 images/s on the validation split).
# The best GN recipe too: convmixer-s16-GN, validation split (seed 0, float32), 88.62 / 88.50 against pointwise
# Muon's 87.46 / 87.62; on all the data, seeds 0-2, 88.47 ± 0.15 test against 87.46 ± 0.14
# (results/convmixer-s16-gn-fast-b128-muon-convs), inside the 30-minute bar where convmixer-fr32-GN is not.
RECIPES["fast-b128-muon-convs"] = replace(
    RECIPES["fast-b128-muon"], name="fast-b128-muon-convs", muon_scope="convs",
    description="the fast-b128 recipe with Muon on every conv weight (pointwise, depthwise and stem; peak "
                "0.1, decoupled weight decay 0.01) and SGD nesterov 0.05 peak one-cycle on the norms and "
                "head: batch 128, 2 warm-up epochs, weight decay 5e-4, label smoothing 0.1, crop + flip")

# `fast-muon` (batch 256) with Muon on every conv weight, as `fast-b128-muon-convs` is for batch 128: the best
# BN recipe, the same as `--recipe fast-muon --set muon_scope=convs`. On the validation split
# (convmixer-s16-BN, fast-ema, weight average / raw weights; results/muon) 88.10 / 88.28 (seed 0, bf16) and
# 88.46 / 88.54 (seed 1, float32) against pointwise Muon's 87.86 / 87.70 and 87.94 / 88.24 at the same seeds
# and precisions (the rule set before seed 1: a gain on both figures at seed 1 and +0.2 on the two-seed
# mean). On all the data, seeds 0-2, bf16: 88.68 ± 0.44 test against 87.98 ± 0.11
# (results/convmixer-s16-bn-fast-muon-convs).
RECIPES["fast-muon-convs"] = replace(
    RECIPES["fast-muon"], name="fast-muon-convs", muon_scope="convs",
    description="the fast recipe with Muon on every conv weight (pointwise, depthwise and stem; peak 0.1, "
                "decoupled weight decay 0.01) and SGD nesterov 0.2 peak one-cycle on the norms and head: "
                "batch 256, 2 warm-up epochs, weight decay 5e-4, label smoothing 0.1, crop + flip")

# `fast-muon-convs` with Muon's peak at 0.2: the best BN recipe, the same as `--recipe fast-muon-convs --set
# muon_lr=0.2`. Doubling Muon's fixed-size steps moves the conv weights twice as far in 20 epochs without
# touching BN's batch statistics (batch 128, the other way to do that, gained BN too little on the raw
# weights). On the validation split (convmixer-s16-BN, fast-ema, bf16, weight average / raw weights;
# results/muon) 88.92 / 88.68 (seed 0) and 89.18 / 89.00 (seed 1) against 0.1's 88.10 / 88.28 and 88.18 /
# 87.94 (the rule set before seed 1: a gain on both figures at seed 1 and +0.3 on the two-seed mean). On all
# the data, seeds 0-2, bf16: 88.82 ± 0.26 test against 88.68 ± 0.44, in 725-793 s per run on the AVX512-BF16
# EPYC (results/convmixer-s16-bn-fast-muon-convs-mlr0.2). For LN, 0.2 was worse than 0.1 (pointwise Muon).
# Without label smoothing it gained BN too little (validation, seed 0: 89.02 / 89.12 against 88.92 / 88.68).
# BN's final configuration trains convmixer-hr2 with it (results/convmixer-hr2-bn-fast-muon-convs-mlr0.2).
RECIPES["fast-muon-convs-mlr0.2"] = replace(
    RECIPES["fast-muon-convs"], name="fast-muon-convs-mlr0.2", muon_lr=0.2,
    description="the fast recipe with Muon on every conv weight (pointwise, depthwise and stem; peak 0.2, "
                "decoupled weight decay 0.01) and SGD nesterov 0.2 peak one-cycle on the norms and head: "
                "batch 256, 2 warm-up epochs, weight decay 5e-4, label smoothing 0.1, crop + flip")

SCHEDULES = ("constant", "linear-decay", "onecycle", "cosine")
OPTIMIZERS = ("sgd", "adamw", "muon")
STEM_INITS = ("default", "whiten")
MUON_SCOPES = ("pointwise", "convs")


def parse_settings(items: list[str] | None) -> dict:
    """``["lr=0.1", "schedule=onecycle"]`` (the CLI's ``--set``) -> typed recipe overrides."""
    types = {f.name: f.type for f in fields(Recipe) if f.name not in ("name", "description")}
    out: dict = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in types:
            raise NormlabError(f"--set {item!r}: expected KEY=VALUE with KEY one of {', '.join(types)}")
        kind = types[key]
        try:
            if kind == "bool":
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                out[key] = value.lower() in ("true", "1", "yes")
            else:
                out[key] = {"int": int, "float": float, "str": str}[kind](value)
        except ValueError:
            raise NormlabError(f"--set {item!r}: {key} takes a {kind}, got {value!r}") from None
    return out


def changes_from_preset(name: str | None, saved: dict) -> list[str]:
    """``KEY=VALUE`` for each field of a run's saved recipe (config.json's "recipe") that differs from the
    preset ``name`` (set through ``--set`` or ``--batch-size``); the peak lr and epochs are left out, as
    reports and cards show them on their own. Empty for an unknown preset."""
    if name not in RECIPES:
        return []
    preset = RECIPES[name].to_dict()
    # Muon's peak, even at its default, when Muon was switched on over an SGD preset
    shown = {"muon_lr"} if saved.get("optimizer") == "muon" and preset["optimizer"] != "muon" else set()
    return [f"{k}={saved[k]}" for k in preset
            if k not in ("name", "description", "lr", "epochs") and k in saved
            and (saved[k] != preset[k] or k in shown)]


def get_recipe(name: str, **overrides) -> Recipe:
    try:
        recipe = RECIPES[name]
    except KeyError:
        raise NormlabError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}") from None
    overrides = {k: v for k, v in overrides.items() if v is not None}
    for key in ("epochs", "batch_size"):
        if key in overrides and overrides[key] < 1:
            raise NormlabError(f"--{key.replace('_', '-')} must be at least 1, got {overrides[key]}")
    if "lr" in overrides and not overrides["lr"] > 0:
        raise NormlabError(f"--lr must be positive, got {overrides['lr']}")
    for key, allowed in (("schedule", SCHEDULES), ("stem_init", STEM_INITS), ("optimizer", OPTIMIZERS),
                         ("muon_scope", MUON_SCOPES)):
        if key in overrides and overrides[key] not in allowed:
            raise NormlabError(f"unknown {key} {overrides[key]!r}; choose one of {', '.join(allowed)}")
    for key in ("weight_decay", "label_smoothing", "warmup_epochs", "crop_pad", "cutout", "momentum",
                "ema_epochs", "muon_lr", "muon_weight_decay"):
        if key in overrides and overrides[key] < 0:
            raise NormlabError(f"{key} must not be negative, got {overrides[key]}")
    if "muon_momentum" in overrides and not 0 <= overrides["muon_momentum"] < 1:
        raise NormlabError(f"muon_momentum must be at least 0 and below 1, got {overrides['muon_momentum']}")
    return replace(recipe, **overrides)


def lr_factor(recipe: Recipe, step: int, total_steps: int, steps_per_epoch: int) -> float:
    """Multiplier on the peak learning rate at optimizer step ``step`` (0-based)."""
    if recipe.schedule == "constant":
        return 1.0
    progress = step / max(1, total_steps)
    if recipe.schedule == "linear-decay":
        return 1.0 - progress
    if recipe.schedule == "onecycle":
        warm = recipe.warmup_epochs * steps_per_epoch
        if step < warm:
            return (step + 1) / warm
        return max(0.0, (total_steps - step) / max(1.0, total_steps - warm))
    if recipe.schedule == "cosine":
        import math
        return 0.5 * (1 + math.cos(math.pi * progress))
    raise NormlabError(f"unknown schedule {recipe.schedule!r}")
