"""Small residual networks for CIFAR-10 ("resnet8"), for any norm, within the 50,000-parameter budget.

The layout follows the "ResNet-9" pattern known to train fast on CIFAR-10 (stages that each open with
a 3x3 conv followed by a 2x2 max-pool, with residual blocks after it), scaled down to the budget and
kept at high resolution where parameters are cheap in FLOPs (docs/architectures.md):

    stem    conv3x3 3->16                          norm ReLU   32x32
            + residual block (16)                              32x32
    stage 1 conv3x3 16->32  max-pool               norm ReLU   16x16
            + residual block (32)                              16x16
    stage 2 conv3x3 32->72  max-pool               norm ReLU    8x8
    head    global average pool -> linear 72->10

Seven 3x3 convs and a linear layer (hence resnet8): 49,978 parameters with bn, gn or ln, 19.9 M
multiply-adds per image. A residual block is ``x + ReLU(norm(conv3x3(ReLU(norm(conv3x3(x))))))``; the
scale of its last norm starts at zero, so each block starts as the identity and the net trains as a
shallow one first (Goyal et al., 2017). No dropout: within 20 epochs a net this small under-fits rather
than over-fits; augmentation regularizes instead. Every conv has no bias (a norm follows each one).
Input normalization is part of the model (buffers), as in S8.

Options, each a separate architecture name so a run folder says exactly what was trained:

- ``ws`` (``resnet8-ws``): every conv is a :class:`WSConv2d`, a weight-standardized conv (Qiao et al.,
  2019): each output channel's kernel is standardized to zero mean and unit variance over its fan-in
  before use. No extra parameters. It smooths the loss landscape the way batch statistics do, which is
  why it closes much of the GN/LN gap to BN in the literature; meant for ``gn`` and ``ln``.
- ``block="sep"`` (``sepresnet8``): every 3x3 conv after the stem is depthwise-separable (a depthwise
  3x3 followed by a pointwise 1x1, one norm after the pair). Fewer parameters per channel, so the net
  can be wider for the same budget, but depthwise convs are slow per FLOP on CPUs (docs/architectures.md).

GroupNorm groups: the norms factory's default, 8 channels per group (every width here is a multiple
of 8).
"""
from __future__ import annotations

from torch import nn

from ..norms import NormLayer
from .common import GlobalAvgPool, Normalize, WSConv2d


class ConvNorm(nn.Sequential):
    """conv3x3 (full, or depthwise-separable) [-> max-pool] -> norm -> ReLU."""

    def __init__(self, cin: int, cout: int, norm_layer: NormLayer, *, conv=nn.Conv2d, sep: bool = False, pool: bool = False):
        if sep:
            layers = [conv(cin, cin, 3, padding=1, groups=cin, bias=False), conv(cin, cout, 1, bias=False)]
        else:
            layers = [conv(cin, cout, 3, padding=1, bias=False)]
        if pool:
            layers.append(nn.MaxPool2d(2))
        super().__init__(*layers, norm_layer(cout), nn.ReLU(inplace=True))


class Residual(nn.Module):
    """``x + body(x)``, body = two ConvNorm; the last norm's scale starts at 0 (the block starts as x)."""

    def __init__(self, channels: int, norm_layer: NormLayer, *, conv=nn.Conv2d, sep: bool = False):
        super().__init__()
        self.body = nn.Sequential(ConvNorm(channels, channels, norm_layer, conv=conv, sep=sep),
                                  ConvNorm(channels, channels, norm_layer, conv=conv, sep=sep))
        last_norm = self.body[-1][-2]
        if getattr(last_norm, "weight", None) is not None:
            nn.init.zeros_(last_norm.weight)

    def forward(self, x):
        return x + self.body(x)


class ResNet(nn.Module):
    """Stem (and ``stem_blocks`` residual blocks at full resolution), then per stage: ConvNorm with max-pool, then ``blocks[i]`` residual blocks; GAP; linear."""

    def __init__(self, norm_layer: NormLayer, *, stem: int = 16, stem_blocks: int = 1, widths=(32, 72), blocks=(1, 0),
                 ws: bool = False, block: str = "basic", num_classes: int = 10):
        super().__init__()
        conv = WSConv2d if ws else nn.Conv2d
        sep = block == "sep"
        self.normalize = Normalize()
        layers: list[nn.Module] = [ConvNorm(3, stem, norm_layer, conv=conv)]  # the stem is always a full conv
        layers.extend(Residual(stem, norm_layer, conv=conv, sep=sep) for _ in range(stem_blocks))
        cin = stem
        for width, n in zip(widths, blocks):
            layers.append(ConvNorm(cin, width, norm_layer, conv=conv, sep=sep, pool=True))
            layers.extend(Residual(width, norm_layer, conv=conv, sep=sep) for _ in range(n))
            cin = width
        self.features = nn.Sequential(*layers)
        self.pool = GlobalAvgPool()
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        return self.fc(self.flatten(self.pool(self.features(self.normalize(x)))))


def resnet8(norm_layer: NormLayer) -> ResNet:
    """49,978 parameters, 19.9 M multiply-adds per image: 7 full 3x3 convs + a linear head."""
    return ResNet(norm_layer)


def resnet8_ws(norm_layer: NormLayer) -> ResNet:
    """resnet8 with weight-standardized convs (same 49,978 parameters); meant for gn and ln."""
    return ResNet(norm_layer, ws=True)


def sepresnet8(norm_layer: NormLayer) -> ResNet:
    """Depthwise-separable variant: 49,642 parameters, 9.4 M multiply-adds, but wider (64 and 112
    channels) and slower per multiply-add on CPUs; GroupNorm on its wide maps is the slowest case."""
    return ResNet(norm_layer, stem=32, stem_blocks=0, widths=(64, 112), blocks=(1, 1), block="sep")
