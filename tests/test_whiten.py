"""Patch-whitening initialization of the first conv (``--set stem_init=whiten``)."""
import pytest
import torch
import torch.nn.functional as F

from normlab import build_model
from normlab.data import load_cifar10
from normlab.config import TrainConfig
from normlab.engine import train
from normlab.errors import NormlabError
from normlab.recipes import get_recipe
from normlab.whiten import first_conv, whiten_stem


def test_whitened_filters_decorrelate_the_patches_they_were_fitted_on(real_data_dir):
    images = load_cifar10(real_data_dir).train_x[:1000]
    model = build_model("convmixer-fr32", "ln")
    conv = whiten_stem(model, images)
    assert conv is first_conv(model) and conv.out_channels == 32
    w = conv.weight.detach()
    assert torch.equal(w[16:], -w[:16])  # +v and -v, so a ReLU passes both halves of each direction
    x = model.normalize(images.float() / 255)
    out = F.conv2d(x, w[:16]).permute(1, 0, 2, 3).reshape(16, -1).double()
    cov = torch.cov(out)
    assert (cov - torch.diag(cov.diag())).abs().max() < 1e-4  # uncorrelated
    # unit variance, less the eps's share, which grows as the directions' variance shrinks
    assert cov.diag()[0] > 0.999 and (cov.diag() > 0.9).all() and (cov.diag() <= 1).all()


def test_unknown_stem_init_is_one_line_error():
    with pytest.raises(NormlabError, match="unknown stem_init 'pca'; choose one of default, whiten"):
        get_recipe("fast", stem_init="pca")


def test_training_with_whitened_stem(real_data_dir, tmp_path):
    data = load_cifar10(real_data_dir)
    cfg = TrainConfig(arch="convmixer-s16", norm="bn", recipe="fast", train_size=512, val_size=256, epochs=1,
                      out=str(tmp_path / "run"), progress=False, precision="fp32",
                      recipe_overrides={"stem_init": "whiten"})
    results = train(cfg, data=data, log=lambda *_: None)
    assert results["epochs"] == 1
    config = (tmp_path / "run/config.json").read_text()
    assert '"stem_init": "whiten"' in config
