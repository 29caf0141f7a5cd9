"""Training recipes: every hyperparameter in one place, each with the reason it has its value.

A recipe is a plain frozen dataclass, validated when it is made (:meth:`Recipe.__post_init__` is the one
check of every field, used by presets, ``--set``, sweeps and resumed runs alike). A run resolves its
recipe once, at its entry point, and stores it, with its label (:func:`recipe_label`), in its run folder;
reports read those and never look at today's presets. Experiment-only presets live in
:mod:`normlab.experimental.recipes`; :func:`get_recipe` finds both.
"""
from __future__ import annotations

import functools
import itertools
import math
from dataclasses import MISSING, asdict, dataclass, fields, replace

from .errors import NormlabError

SCHEDULES = ("constant", "linear-decay", "onecycle", "cosine")
OPTIMIZERS = ("sgd", "adamw", "muon")
STEM_INITS = ("default", "whiten")
MUON_SCOPES = ("pointwise", "convs")
FLIP_MODES = ("random", "alternate")
SMALL_MODES = ("scale", "crop")
SCHEDULE_CLOCKS = ("steps", "compute")
MAX_CROP_PAD = 16   # reflect padding needs pad < 32 (the image side); half the image is already absurd
MAX_CUTOUT = 32     # the whole image
IMAGE_SIDE = 32     # CIFAR-10's images, the size every run ends training at and is tested at
MIN_SMALL_SIZE = 8  # S8 and the convmixers pool or patch by 4 in all: 8 px leaves them a 2x2 map


@dataclass(frozen=True)
class Recipe:
    name: str
    epochs: int = 20             # the study's budget
    batch_size: int = 128        # the reference's
    lr: float = 0.01             # peak learning rate
    optimizer: str = "sgd"       # sgd | adamw (betas 0.9/0.999, weight decay decoupled from the gradient;
                                 # momentum and nesterov then do not apply) | muon (Muon on the convs of
                                 # muon_scope at muon_lr, SGD as above on everything else; normlab.optim)
    muon_lr: float = 0.05        # optimizer=muon: peak learning rate of Muon's weights (same schedule)
    muon_weight_decay: float = 0.0  # optimizer=muon: decoupled weight decay of Muon's weights (each step
                                 # w -= lr * wd * w). A norm follows each of them, so their scale does not
                                 # change the function, but it grows with Muon's fixed-size steps, which
                                 # shrinks the step relative to the weights as training goes on
    muon_momentum: float = 0.95  # optimizer=muon: Muon's momentum (Nesterov), its authors' default
    muon_scope: str = "pointwise"  # optimizer=muon: pointwise: the dense 1x1 convs (Muon's hidden
                                 # matrices); convs: every conv weight, depthwise and stem too
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    decay_norms: bool = True     # weight decay on norm scales/shifts and biases (every 1-d parameter) too;
                                 # False: on conv and linear weights only ("no bias decay")
    schedule: str = "constant"   # constant | linear-decay (to 0 at the last step) | onecycle (linear
                                 # warm-up, then linear decay to 0) | cosine
    warmup_epochs: float = 0.0   # onecycle only
    schedule_clock: str = "steps"  # what the schedule's progress counts: steps | compute (with progressive
                                 # resizing, a step on s x s images counts (s / 32)^2 of a full-size one,
                                 # so cheap early epochs use up less of the decay; the warm-up still
                                 # counts steps, as it guards the first updates)
    label_smoothing: float = 0.0
    flip: bool = False           # random horizontal flip
    flip_mode: str = "random"    # random: each image mirrored with probability 1/2 in each epoch | alternate:
                                 # a fixed random half in even epochs, the other half in odd ones, so every
                                 # image is seen both ways every two epochs (normlab.augment.alternating_flips)
    crop_pad: int = 0            # random translation by up to this many pixels (reflect padding)
    cutout: int = 0              # side of a random square filled with the mean colour
    stem_init: str = "default"   # default (PyTorch's) | whiten: the first conv's filters from the principal
                                 # directions of the training images' patches (normlab.whiten)
    small_epochs: int = 0        # progressive resizing: the first this many epochs train on images scaled
                                 # down to small_size x small_size (after augmentation; antialiased). A
                                 # conv net with global pooling runs at any size, and a forward pass there
                                 # costs (small_size / 32)^2 of a full one, so early epochs, which learn
                                 # coarse features, come cheap; the later ones adapt the net to full size
    small_size: int = 16         # the side of those images, in pixels
    mid_epochs: int = 0          # progressive resizing's middle stage: this many epochs after the small ones
                                 # train at mid_size x mid_size, on the way up to full size
    mid_size: int = 24           # the side of those images, in pixels
    small_mode: str = "scale"    # how they are made small: scale (the whole image, scaled down) | crop (a
                                 # random small_size window at full scale: objects keep the size in pixels
                                 # they have at full size; on the validation split it did worse than scale)
    ema_epochs: float = 0.0      # weight averaging: an exponential moving average of the weights (and norm
                                 # statistics) with this time constant in epochs, evaluated and saved
                                 # instead of the raw weights. 0: off

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            kind = f.type
            if kind == "bool" and not isinstance(value, bool):
                raise _bad(f.name, value, "true or false")
            if kind == "int" and (isinstance(value, bool) or not isinstance(value, int)):
                raise _bad(f.name, value, "a whole number")
            if kind == "float":
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                    raise _bad(f.name, value, "a finite number")
                object.__setattr__(self, f.name, float(value))
            if kind == "str" and not isinstance(value, str):
                raise _bad(f.name, value, "a word")
        for key, allowed in (("schedule", SCHEDULES), ("stem_init", STEM_INITS), ("optimizer", OPTIMIZERS),
                             ("muon_scope", MUON_SCOPES), ("flip_mode", FLIP_MODES),
                             ("small_mode", SMALL_MODES),
                             ("schedule_clock", SCHEDULE_CLOCKS)):
            if getattr(self, key) not in allowed:
                raise NormlabError(f"unknown {key} {getattr(self, key)!r}; choose one of {', '.join(allowed)}")
        for key in ("epochs", "batch_size"):
            if getattr(self, key) < 1:
                raise _bad(key, getattr(self, key), "at least 1")
        if not self.lr > 0:
            raise _bad("lr", self.lr, "positive")
        for key in ("weight_decay", "warmup_epochs", "ema_epochs", "muon_lr", "muon_weight_decay"):
            if getattr(self, key) < 0:
                raise _bad(key, getattr(self, key), "0 or more (not negative)")
        for key in ("momentum", "muon_momentum", "label_smoothing"):
            if not 0 <= getattr(self, key) < 1:
                raise _bad(key, getattr(self, key), "at least 0 and below 1")
        if not 0 <= self.crop_pad <= MAX_CROP_PAD:
            raise _bad("crop_pad", self.crop_pad, f"between 0 and {MAX_CROP_PAD} pixels")
        if not 0 <= self.small_epochs < self.epochs:
            raise _bad("small_epochs", self.small_epochs, f"between 0 and {self.epochs - 1} (the last epoch "
                       "trains at full size)")
        if not 0 <= self.mid_epochs < self.epochs - self.small_epochs:
            raise _bad("mid_epochs", self.mid_epochs, f"between 0 and {self.epochs - self.small_epochs - 1} (after "
                       f"the {self.small_epochs} small epochs, the last epoch trains at full size)")
        for key in ("small_size", "mid_size"):
            if not MIN_SMALL_SIZE <= getattr(self, key) <= IMAGE_SIDE:
                raise _bad(key, getattr(self, key), f"between {MIN_SMALL_SIZE} and {IMAGE_SIDE} pixels")
        if not 0 <= self.cutout <= MAX_CUTOUT:
            raise _bad("cutout", self.cutout, f"between 0 and {MAX_CUTOUT} pixels")
        if self.nesterov and self.momentum == 0 and self.optimizer != "adamw":
            raise NormlabError("recipe: nesterov=true needs momentum above 0; set momentum or nesterov=false")

    def image_size(self, epoch: int) -> int:
        """The side, in pixels, of the images epoch ``epoch`` (0-based) trains on: progressive resizing."""
        for side, n in self.stages():
            if epoch < n:
                return side
            epoch -= n
        return IMAGE_SIDE

    def stages(self) -> list[tuple[int, int]]:
        """(image side in pixels, epochs) of each stage of progressive resizing, in training order; the
        last is the full-size one (a recipe without resizing has that one only)."""
        full = self.epochs - self.small_epochs - self.mid_epochs
        return [(side, n) for side, n in ((self.small_size, self.small_epochs), (self.mid_size, self.mid_epochs),
                                          (IMAGE_SIDE, full)) if n]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, saved: dict) -> "Recipe":
        """The recipe a run folder's config.json holds. Fields added since it was written take the default
        that keeps the old behaviour (fields are only ever added that way); keys no longer used (an old
        free-text description) are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in saved.items() if k in known})

    @classmethod
    def field_defaults(cls) -> dict:
        return {f.name: f.default for f in fields(cls) if f.default is not MISSING}


FLAGS = {"epochs": "--epochs", "batch_size": "--batch-size", "lr": "--lr"}  # fields with options of their own


def _bad(key: str, value, wanted: str) -> NormlabError:
    fix = f"pass a valid {FLAGS[key]}" if key in FLAGS else f"fix --set {key}=... (normlab recipes NAME lists the fields)"
    return NormlabError(f"recipe {key} must be {wanted}, got {value!r}; {fix}")


def describe(recipe: Recipe) -> str:
    """A recipe in one line, generated from its fields (so it can never disagree with them)."""
    if recipe.optimizer == "adamw":
        opt = f"AdamW peak {recipe.lr:g}"
    else:
        opt = f"SGD{' nesterov' if recipe.nesterov else ''} peak {recipe.lr:g}, momentum {recipe.momentum:g}"
    schedule = {"constant": "constant learning rate", "linear-decay": "linear decay to 0",
                "cosine": "cosine decay", "onecycle": f"one-cycle ({recipe.warmup_epochs:g} warm-up epochs)"}
    clock = " over compute" if recipe.schedule_clock == "compute" and recipe.schedule != "constant" else ""
    parts = [f"{recipe.epochs} epochs, batch {recipe.batch_size}", f"{opt}, {schedule[recipe.schedule]}{clock}"]
    if recipe.optimizer == "muon":
        what = "every conv" if recipe.muon_scope == "convs" else "the pointwise convs"
        parts.append(f"Muon on {what} (peak {recipe.muon_lr:g}, decoupled weight decay "
                     f"{recipe.muon_weight_decay:g}), SGD on the rest")
    if recipe.weight_decay:
        parts.append(f"weight decay {recipe.weight_decay:g}" + ("" if recipe.decay_norms else " (not on norms)"))
    if recipe.label_smoothing:
        parts.append(f"label smoothing {recipe.label_smoothing:g}")
    flip = "alternating flip" if recipe.flip_mode == "alternate" else "flip"
    augment = [f"crop {recipe.crop_pad}" if recipe.crop_pad else "", flip if recipe.flip else "",
               f"cutout {recipe.cutout}" if recipe.cutout else ""]
    parts.append(" + ".join(a for a in augment if a) or "no augmentation")
    if recipe.small_epochs:
        how = " (random crops)" if recipe.small_mode == "crop" else ""
        parts.append(f"first {recipe.small_epochs} epochs at {recipe.small_size}x{recipe.small_size} px{how}")
    if recipe.mid_epochs:
        parts.append(f"{'then ' if recipe.small_epochs else 'first '}{recipe.mid_epochs} at "
                     f"{recipe.mid_size}x{recipe.mid_size} px")
    if recipe.ema_epochs:
        parts.append(f"weight average over {recipe.ema_epochs:g} epochs")
    if recipe.stem_init != "default":
        parts.append(f"{recipe.stem_init} stem init")
    return "; ".join(parts)


# --- presets ---------------------------------------------------------------------------------------
# The reference study exactly: SGD lr 0.01 momentum 0.9, batch 128, constant lr, no augmentation.
REFERENCE = Recipe("reference")

# The accuracy recipe for 20 epochs. Every value is a standard choice for short CIFAR-10 schedules, kept
# only where the 5,000-image validation split agreed (docs/recipes.md has the evidence for each).
FAST = Recipe(
    "fast",
    epochs=20,              # the budget; the schedule is built to end exactly there
    batch_size=256,         # BN statistics are stable at 256, still ~196 steps per epoch, and larger
                            # batches use the CPU's bf16 matrix units better than 128
    lr=0.2,                 # the usual 0.1 per 128 images for SGD on CIFAR ResNets, scaled to batch 256
    momentum=0.9,
    nesterov=True,          # slightly better than heavy-ball on short schedules, free
    weight_decay=5e-4,      # the CIFAR-ResNet standard; with norms it mainly keeps the effective learning
                            # rate up as the weights would otherwise grow
    schedule="onecycle",    # linear warm-up, then linear decay to 0 at the last step
    warmup_epochs=2.0,      # 10% of the run: lets a high peak start safely, most of all for GN/LN
    label_smoothing=0.1,    # soft targets: a cheap regularizer
    flip=True,              # CIFAR classes are mirror-symmetric
    crop_pad=4,             # random translation by up to 4 px (reflect padding), the CIFAR standard
)
# Muon with decoupled weight decay on every conv weight (depthwise and stem included), SGD on norms and
# head: on the validation split it beat SGD and pointwise-only Muon for every norm (docs/recipes.md).
MUON_CONVS = dict(optimizer="muon", muon_lr=0.1, muon_weight_decay=0.01, muon_scope="convs")

# BN's best: batch 256 with Muon's peak doubled; BN's batch statistics stay as they are while the
# conv weights move twice as far (for LN, 0.2 was worse than 0.1).
FAST_MUON_BN = replace(FAST, name="fast-muon-convs-mlr0.2", **{**MUON_CONVS, "muon_lr": 0.2})

# The speedrun: a good model in a fifth of the headline's training compute or less (docs/recipes.md,
# "The speedrun"). GN's and LN's 20-epoch recipe on a 10-epoch schedule: 7 epochs at 16x16 (a quarter of
# the work per image), 2 at 24x24 (9/16 of it), 1 at full size: 7/4 + 18/16 + 1 = 3.88 full-size epochs'
# worth of compute instead of 20. Chosen on the validation split (convmixer-s16-GN, seed 0). With 4
# full-size epochs' compute: 4 epochs at full size 79.70% val; 4 small + 3 full 82.10; 8 + 2 83.16; 12 + 1
# 81.32. On 8 + 2, one change each: Muon's peak 0.2 instead of 0.1 83.96 (bigger steps for a short
# schedule), crop 2 instead of 4 83.94 (less augmentation for a model with little time to fit), a whitened
# stem 83.60. 7 + 2 with all three: 84.08 (LN on convmixer-fr32: 83.76); then the middle stage in place of
# a full-size epoch, easing the switch to full size: 84.54 (LN 84.64).
SPEEDRUN = replace(
    FAST, name="speedrun", batch_size=128, lr=0.05, **{**MUON_CONVS, "muon_lr": 0.2},
    epochs=10, small_epochs=7, small_size=16, mid_epochs=2, mid_size=24,
    warmup_epochs=0.5,  # 2 warm-up epochs would be a fifth of it
    crop_pad=2, stem_init="whiten",
)
# BN's speedrun: its 20-epoch recipe (batch 256, Muon peak 0.2) with a whitened stem, 8 epochs at 16x16 and
# 4 at full size (6 full-size epochs of convmixer-s16: 1/5.7 of BN's headline compute on convmixer-hr2).
# With GN's 8 + 2 schedule at batch 128, BN reached 82.70% val against GN's 83.16.
SPEEDRUN_BN = replace(FAST_MUON_BN, name="speedrun-bn", epochs=12, small_epochs=8, small_size=16,
                      warmup_epochs=0.5, stem_init="whiten")

# LN's speedrun: `speedrun` with Muon's peak at 0.3. At 20 epochs LN did best at 0.1, but a schedule of
# under 4 full-size epochs wants bigger steps: on the validation split (convmixer-fr32-LN, seed 0) peaks
# 0.1 / 0.2 / 0.3 / 0.4 gave 84.02 / 84.64 / 85.08 / 84.32% (GN on convmixer-s16: 0.3 gave 84.28 against
# 84.08, within noise, so GN keeps `speedrun`).
SPEEDRUN_LN = replace(SPEEDRUN, name="speedrun-ln", muon_lr=0.3)

RECIPES: dict[str, Recipe] = {r.name: r for r in (
    REFERENCE,
    # The smallest change that lets every norm end above 70% at its final epoch: under the constant 0.01
    # S8 is still improving at epoch 20, so a larger step, annealed to 0 (chosen on the validation split).
    Recipe("reference-decay", lr=0.05, schedule="linear-decay"),
    # reference-decay left S8-LN just under 70%; weight decay 5e-4 lifted it on the validation split
    # (72.30% against 70.34%): with a norm after every conv it keeps the effective learning rate up.
    Recipe("reference-decay-wd", lr=0.05, schedule="linear-decay", weight_decay=5e-4),
    FAST,
    # Batch 128 at half the peak: twice the steps in 20 epochs; better for GN and LN, not for BN.
    replace(FAST, name="fast-b128", batch_size=128, lr=0.05),
    # GN's and LN's best: fast-b128 with Muon on every conv.
    replace(FAST, name="fast-b128-muon-convs", batch_size=128, lr=0.05, **MUON_CONVS),
    FAST_MUON_BN,
    SPEEDRUN,
    SPEEDRUN_BN,
    SPEEDRUN_LN,
)}

# Each norm's 20-epoch headline configuration (the README's best, three seeds): (architecture, recipe).
HEADLINE = {"bn": ("convmixer-hr2", "fast-muon-convs-mlr0.2"), "gn": ("convmixer-fr32", "fast-b128-muon-convs"),
            "ln": ("convmixer-fr32", "fast-b128-muon-convs")}
# Each norm's speedrun: (architecture, recipe).
# GN's moved to convmixer-fr32 with its headline (85.14% val against 84.54 on convmixer-s16; 3 test seeds
# 85.23 ± 0.52 against 84.47 ± 0.07), still a fifth of the headline's compute. LN's moved to
# `speedrun-ln` (85.08% val against 84.64; 3 test seeds 84.97 ± 0.46 against 84.55 ± 0.35).
SPEEDRUN_RUNS = {"bn": ("convmixer-s16", "speedrun-bn"), "gn": ("convmixer-fr32", "speedrun"),
                 "ln": ("convmixer-fr32", "speedrun-ln")}


def all_recipes() -> dict[str, Recipe]:
    """The public presets, then the experimental ones."""
    from .experimental.recipes import PRESETS

    return {**RECIPES, **{name: replace(RECIPES[base], name=name, **changes) for name, (base, changes) in PRESETS.items()}}


def parse_settings(items: list[str] | None) -> dict:
    """``["lr=0.1", "schedule=onecycle"]`` (the CLI's ``--set``) -> typed recipe overrides. The values are
    checked when the recipe is made (:class:`Recipe`)."""
    types = {f.name: f.type for f in fields(Recipe) if f.name != "name"}
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


def get_recipe(name: str, **overrides) -> Recipe:
    """The preset ``name`` (public or experimental) with ``overrides`` (None values ignored)."""
    presets = all_recipes()
    if name not in presets:
        raise NormlabError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)} (or an experimental "
                           "one: normlab recipes --all)")
    unknown = [k for k in overrides if k == "name" or k not in Recipe.field_defaults()]
    if unknown:
        raise NormlabError(f"unknown recipe field {', '.join(unknown)}; normlab recipes NAME lists them")
    return replace(presets[name], **{k: v for k, v in overrides.items() if v is not None})


def recipe_label(recipe: Recipe) -> str:
    """The recipe's name plus each field that differs from the preset of that name, e.g. "fast-b128
    label_smoothing=0.0"; the peak lr and epochs are left out, as reports show them in columns of their
    own. Computed when a run starts and stored with it, so a later change to a preset relabels nothing."""
    preset = all_recipes().get(recipe.name)
    if preset is None:
        return recipe.name
    ours, theirs = recipe.to_dict(), preset.to_dict()
    # Muon's peak, even at its default, when Muon was switched on over an SGD preset
    shown = {"muon_lr"} if ours["optimizer"] == "muon" and theirs["optimizer"] != "muon" else set()
    changes = [f"{k}={ours[k]}" for k in theirs
               if k not in ("name", "lr", "epochs") and (ours[k] != theirs[k] or k in shown)]
    return " ".join([recipe.name, *changes])


def lr_factor(recipe: Recipe, step: int, total_steps: int, steps_per_epoch: int) -> float:
    """Multiplier on the peak learning rate at optimizer step ``step`` (0-based)."""
    if recipe.schedule == "constant":
        return 1.0
    if recipe.schedule == "onecycle":
        warm = recipe.warmup_epochs * steps_per_epoch
        if step < warm:
            return (step + 1) / warm
        clock = _clock(recipe, steps_per_epoch)
        return max(0.0, (clock(total_steps) - clock(step)) / max(1.0, clock(total_steps) - clock(warm)))
    clock = _clock(recipe, steps_per_epoch)
    progress = clock(step) / max(1, clock(total_steps))
    if recipe.schedule == "linear-decay":
        return 1.0 - progress
    return 0.5 * (1 + math.cos(math.pi * progress))  # cosine


@functools.lru_cache(maxsize=8)  # lr_factor asks every step; the recipe and epoch length stay the same
def _clock(recipe: Recipe, steps_per_epoch: int):
    """Step count -> elapsed schedule time: the steps themselves, or (``schedule_clock=compute``) steps
    weighted by their images' area, a step on s x s images counting (s / 32)^2 of a full-size one."""
    if recipe.schedule_clock == "steps" or not (recipe.small_epochs or recipe.mid_epochs):
        return lambda step: step
    weights = [(recipe.image_size(e) / IMAGE_SIDE) ** 2 for e in range(recipe.epochs)]
    before = [w * steps_per_epoch for w in itertools.accumulate(weights, initial=0.0)]  # at each epoch's start

    def clock(step: float) -> float:
        epoch = min(int(step // steps_per_epoch), recipe.epochs - 1)
        return before[epoch] + (step - epoch * steps_per_epoch) * weights[epoch]

    return clock
