"""Experiment-only architectures (see :mod:`normlab.experimental`). The builders import the model
classes when called."""
from __future__ import annotations


def _convmixer(**options):
    def build(norm_layer):
        from ..models.convmixer import ConvMixer

        return ConvMixer(norm_layer, **options)
    return build


def _resnet(**options):
    def build(norm_layer):
        from ..models.resnet import ResNet

        return ResNet(norm_layer, **options)
    return build


ARCHS = {
    # ConvMixer-style: 9 depthwise + pointwise blocks of width 64 at 16x16 after a 2x2 patch conv (45,898
    # parameters); the shipped variants add full-resolution work in front of it.
    "convmixer": _convmixer(),
    # ... with weight-standardized embedding and pointwise convs (for GN/LN; no gain on the validation split)
    "convmixer-ws": _convmixer(ws=True),
    # convmixer-s16 with residual pointwise convs too
    "convmixer-s16-res": _convmixer(stem=16, pw_residual=True),
    # convmixer-fr32 with 10 blocks of width 60 instead of 9 of 64 (48,818 parameters)
    "convmixer-fr32-d10": _convmixer(width=60, depth=10, stem=32, stem_blocks=1),
    # convmixer-fr32 with GELU instead of ReLU, as in ConvMixer
    "convmixer-fr32-gelu": _convmixer(stem=32, stem_blocks=1, act="gelu"),
    # convmixer-hr2 with a 48-channel stem (49,594 parameters)
    "convmixer-hr2-s48": _convmixer(stem=48, hr_blocks=2),
    # convmixer-hr2 with three of its nine blocks at full resolution (48,106 parameters)
    "convmixer-hr3": _convmixer(stem=32, hr_blocks=3),
    # residual nets with full 3x3 convs (49,978 parameters), weight-standardized, and depthwise-separable
    "resnet8": _resnet(),
    "resnet8-ws": _resnet(ws=True),
    "sepresnet8": _resnet(stem=32, stem_blocks=0, widths=(64, 112), blocks=(1, 1), block="sep"),
}
