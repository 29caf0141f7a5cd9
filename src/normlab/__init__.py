"""normlab: small CIFAR-10 classifiers that differ only in their normalization layer."""
__version__ = "0.1.0"

from .models import build_model, count_params  # noqa: E402
from .engine import TrainConfig, load_model, train  # noqa: E402
from .pretrained import load_pretrained, pretrained_card  # noqa: E402

__all__ = ["build_model", "count_params", "load_model", "load_pretrained", "pretrained_card", "train",
           "TrainConfig", "__version__"]
