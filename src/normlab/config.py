"""What a run is: the user's :class:`TrainConfig`, and the :class:`RunSpec` it resolves to once, at the
entry point (``normlab.train``, ``compare``, ``sweep``, ``study_batch_size`` and the CLI), before anything
trains. Everything after works from the spec: the frozen recipe and its label, the parameter count
checked against the budget, the run folder.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from .devices import DEVICES, PRECISIONS, compile_mode
from .errors import NormlabError
from .recipes import IMAGE_SIDE, Recipe, get_recipe, recipe_label

PARAM_BUDGET = 50_000
EPOCH_BUDGET = 20
MAX_SEED = 2**63 - 1  # torch.manual_seed's range


@dataclass(frozen=True)
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
    compile: str = "auto"           # torch.compile the model: auto (where measured faster), on, off
    sync_bn: bool = False           # under torchrun: BatchNorm statistics over the global batch (CUDA)

    @classmethod
    def from_fields(cls, config: "TrainConfig | None" = None, **changes) -> "TrainConfig":
        """``config`` (default: all defaults) with ``changes``; an unknown field is a one-line error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise NormlabError(f"unknown training setting {', '.join(unknown)}; choose from {', '.join(sorted(known))}")
        return replace(config or cls(), **changes)

    def get_recipe(self) -> Recipe:
        explicit = {"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr}
        return get_recipe(self.recipe, **{**self.recipe_overrides,
                                          **{k: v for k, v in explicit.items() if v is not None}})

    def default_out(self) -> Path:
        return Path("runs") / f"{self.arch}-{self.norm}-{self.recipe}-seed{self.seed}"


@dataclass(frozen=True)
class RunSpec:
    """A resolved, checked run: everything the training loop needs to know, decided once."""

    config: TrainConfig
    recipe: Recipe
    recipe_label: str
    params: int
    out: Path
    macs_at: dict[int, int] = field(default_factory=dict)  # image side -> multiply-adds of one forward
                                                            # pass of one image at that side, for every side
                                                            # the recipe trains at (progressive resizing)

    @property
    def macs(self) -> int:
        """Multiply-adds of one forward pass of one full-size image (convs and linears)."""
        return self.macs_at.get(IMAGE_SIDE, 0)

    def train_compute(self, train_images: int) -> tuple[int, int]:
        """(images seen, multiply-adds) of the whole run's forward passes: the training compute that
        recipes are compared by (a backward pass costs about twice its forward, for every recipe alike)."""
        return self.recipe.epochs * train_images, train_images * sum(
            n * self.macs_at.get(side, 0) for side, n in self.recipe.stages())

    def settings(self, device: str, precision: str) -> dict:
        """What defines the run's numbers: saved in config.json and checked on resume."""
        c = self.config
        return {"arch": c.arch, "norm": c.norm, "seed": c.seed, "train_size": c.train_size,
                "val_size": c.val_size, "device": device, "precision": precision,
                "recipe": self.recipe.to_dict(), "budget": c.budget}


def check_int(value, what: str, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        span = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise NormlabError(f"{what} must be a whole number {span}, got {value!r}")
    return value


def check_budget(params: int, epochs: int, arch: str, norm: str) -> None:
    if params > PARAM_BUDGET:
        raise NormlabError(f"{arch}/{norm} has {params:,} parameters, over the {PARAM_BUDGET:,} budget; "
                           "pass --no-budget to train it anyway")
    if epochs > EPOCH_BUDGET:
        raise NormlabError(f"{epochs} epochs is over the {EPOCH_BUDGET}-epoch budget; pass --no-budget to "
                           "train longer anyway")


def resolve(config: TrainConfig) -> RunSpec:
    """Check every setting of ``config`` (names, ranges, the budget) and resolve its recipe, without
    touching the data or any file: a bad setting is a one-line error before anything trains."""
    from .models import build_model, count_params
    from .summary import forward_macs

    check_int(config.seed, "--seed", 0, MAX_SEED)
    check_int(config.val_size, "--val-size", 0)
    if config.train_size is not None:
        check_int(config.train_size, "--train-size", 1)
    if config.device not in DEVICES:
        raise NormlabError(f"unknown device {config.device!r}; choose {', '.join(DEVICES)}")
    if config.precision not in PRECISIONS:
        raise NormlabError(f"unknown precision {config.precision!r}; choose {', '.join(PRECISIONS)}")
    compile_mode(config.compile)
    recipe = config.get_recipe()
    model = build_model(config.arch, config.norm)
    params = count_params(model)
    if config.budget:
        check_budget(params, recipe.epochs, config.arch, config.norm)
    return RunSpec(config, recipe, recipe_label(recipe), params, Path(config.out or config.default_out()),
                   {side: forward_macs(model, side) for side, _ in recipe.stages()})  # the last is full size
