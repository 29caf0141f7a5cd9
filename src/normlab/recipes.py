"""Training recipes: every hyperparameter in one place, each with the reason it has its value.

A recipe is a plain frozen dataclass; the CLI can override epochs, batch size and learning rate.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from .errors import NormlabError


@dataclass(frozen=True)
class Recipe:
    name: str
    epochs: int = 20             # the study's budget
    batch_size: int = 128        # the reference's
    lr: float = 0.01             # peak learning rate (SGD)
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    schedule: str = "constant"   # constant | onecycle (linear warm-up then linear decay to 0) | cosine
    warmup_epochs: float = 0.0   # onecycle only
    label_smoothing: float = 0.0
    flip: bool = False           # random horizontal flip
    crop_pad: int = 0            # random translation by up to this many pixels (reflect padding)
    cutout: int = 0              # side of a random square filled with the mean colour
    description: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


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
    )
}


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
