"""normlab: small CIFAR-10 classifiers that differ only in their normalization layer.

The public API (:mod:`normlab.api`) is imported on first use, so ``import normlab`` and the CLI's help
stay fast (no torch until something needs it)."""
from .version import __version__

__all__ = ["TrainConfig", "build_model", "compare", "count_params", "evaluate", "export", "leaderboard", "load_model",
           "load_pretrained", "predict", "pretrained_card", "register_norm", "report", "robustness", "study_batch_size", "sweep",
           "train", "__version__"]


def __getattr__(name: str):
    if name == "pretrained_card":
        from .pretrained import pretrained_card

        return pretrained_card
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'normlab' has no attribute {name!r}")
