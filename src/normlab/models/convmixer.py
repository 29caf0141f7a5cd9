"""A ConvMixer-style network ("convmixer"), for any norm, within the 50,000-parameter budget.

The layout follows ConvMixer (Trockman & Kolter, "Patches Are All You Need?", 2022): a patch embedding,
then ``depth`` identical blocks at one resolution, each a depthwise conv (mixes space, with a residual
connection around it) followed by a pointwise 1x1 conv (mixes channels):

    embed   conv 2x2, stride 2, 3->64                   ReLU norm   16x16
    block   x + norm(ReLU(depthwise conv3x3(x)))                    16x16   } x 9
            norm(ReLU(conv1x1 64->64 (x)))                          16x16   }
    head    global average pool -> linear 64->10

45,898 parameters with bn, gn or ln; 11.0 M multiply-adds per image. Why this shape under a parameter
budget (measured on the validation split, docs/architectures.md): a depthwise-separable block costs
9C + C^2 parameters instead of 9C^2, so the net can be nine blocks deep at width 64 and keep all of them
at 16x16 resolution (no pooling until the head), which is what a net this small needs: in 8-epoch
validation runs it learned far faster than the pooled residual nets and S8. Kernel 3 rather than
ConvMixer's larger kernels: on this CPU a depthwise 5x5 took 5x the time of a 3x3, not 2.8x, and the
budget buys one more block instead. Norms come after the activation, as in ConvMixer. No conv biases
(a norm follows every conv). Input normalization is part of the model (buffers), as in S8.

The shipped variants spend multiply-adds where the image still has its detail, for few parameters:
``convmixer-s16`` puts a full-resolution 3x3 conv (3 -> 16) before the patch embedding; ``convmixer-fr32``
a full-resolution stage (a 3x3 conv 3 -> 32 and one mixer block of width 32 at 32x32, then a 2x2 max-pool
and a 1x1 conv 32 -> 64 in place of the strided patch conv, whose 32 x 64 x 4 weights the budget cannot
afford); ``convmixer-hr2`` keeps the width at full resolution instead (a 3x3 conv 3 -> 32, a 1x1 conv
32 -> 64 and the first two of the nine width-64 blocks at 32x32, then a 2x2 max-pool). The options this
class has beyond those (weight-standardized convs, residual pointwise convs, GELU, other widths and
depths) serve :mod:`normlab.experimental.archs`.
"""
from __future__ import annotations

from torch import nn

from ..norms import NormLayer
from .common import GlobalAvgPool, Normalize, WSConv2d


class Residual(nn.Module):
    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward(self, x):
        return x + self.body(x)


def _act(act: str) -> nn.Module:
    return nn.GELU() if act == "gelu" else nn.ReLU(inplace=True)


def mixer_block(width: int, kernel: int, norm_layer: NormLayer, conv=nn.Conv2d, pw_residual: bool = False,
                act: str = "relu") -> nn.Sequential:
    # A depthwise kernel stays a plain conv unless the norm asks otherwise: standardized to zero mean, a 3x3
    # kernel could no longer average (low-pass) its channel.
    dw_conv = getattr(norm_layer, "depthwise_conv", nn.Conv2d)
    depthwise = Residual(nn.Sequential(dw_conv(width, width, kernel, padding=kernel // 2, groups=width, bias=False),
                                       _act(act), norm_layer(width)))
    pointwise = [conv(width, width, 1, bias=False), _act(act), norm_layer(width)]
    if pw_residual:
        return nn.Sequential(depthwise, Residual(nn.Sequential(*pointwise)))
    return nn.Sequential(depthwise, *pointwise)  # (the state-dict keys of the pretrained weights)


class ConvMixer(nn.Module):
    def __init__(self, norm_layer: NormLayer, *, width: int = 64, depth: int = 9, kernel: int = 3, patch: int = 2,
                 stem: int = 0, stem_blocks: int = 0, hr_blocks: int = 0, ws: bool = False,
                 pw_residual: bool = False, act: str = "relu", num_classes: int = 10):
        super().__init__()
        if hr_blocks and (stem_blocks or not 0 < hr_blocks < depth):
            raise ValueError("hr_blocks needs 0 < hr_blocks < depth and no stem_blocks")
        conv = WSConv2d if ws else getattr(norm_layer, "conv", nn.Conv2d)  # a norm may ask for its conv
        self.normalize = Normalize()
        # stem > 0: a full-resolution 3x3 conv (3 -> stem channels) before the patch embedding, so the
        # patches are cut from learned features rather than raw pixels.
        pre = [conv(3, stem, 3, padding=1, bias=False), _act(act), norm_layer(stem)] if stem else []
        if stem_blocks:
            # stem_blocks > 0: that many mixer blocks at full resolution and the stem's width, then a
            # parameter-free max-pool over the patches and a 1x1 conv to the width (instead of a strided
            # patch conv, whose stem x width x patch^2 weights the budget cannot afford at stem 32).
            pre += [mixer_block(stem, kernel, norm_layer, conv, act=act) for _ in range(stem_blocks)]
            down = [nn.MaxPool2d(patch), conv(stem, width, 1, bias=False)]
        elif hr_blocks:
            # hr_blocks > 0: no patching; a 1x1 conv to the width, the first hr_blocks of the depth blocks at
            # full resolution, then a parameter-free max-pool over the patches (below).
            down = [conv(stem or 3, width, 1, bias=False)]
        else:
            down = [conv(stem or 3, width, patch, stride=patch, bias=False)]
        self.embed = nn.Sequential(*pre, *down, _act(act), norm_layer(width))
        blocks = [mixer_block(width, kernel, norm_layer, conv, pw_residual, act) for _ in range(depth)]
        if hr_blocks:
            blocks.insert(hr_blocks, nn.MaxPool2d(patch))
        self.blocks = nn.Sequential(*blocks)
        self.pool = GlobalAvgPool(mean=True)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.fc(self.pool(self.blocks(self.embed(self.normalize(x)))).flatten(1))


def convmixer_s16(norm_layer: NormLayer) -> ConvMixer:
    """``convmixer`` after a full-resolution 3x3 conv 3 -> 16 at 32x32: 49,690 parameters, 12.3 M
    multiply-adds (docs/architectures.md)."""
    return ConvMixer(norm_layer, stem=16)


def convmixer_fr32(norm_layer: NormLayer) -> ConvMixer:
    """``convmixer`` after a full-resolution stage: a 3x3 conv 3 -> 32 and one mixer block of width 32 at
    32x32, then a 2x2 max-pool and a 1x1 conv 32 -> 64 in place of the patch conv: 49,546 parameters."""
    return ConvMixer(norm_layer, stem=32, stem_blocks=1)


def convmixer_hr2(norm_layer: NormLayer) -> ConvMixer:
    """``convmixer`` with its first two mixer blocks at full resolution: a 3x3 conv 3 -> 32 and a 1x1 conv
    32 -> 64 at 32x32 (no patching), two blocks of width 64 at 32x32, a 2x2 max-pool, then seven blocks at
    16x16: 48,106 parameters, 20.9 M multiply-adds (1.7x ``convmixer-s16``'s)."""
    return ConvMixer(norm_layer, stem=32, hr_blocks=2)
