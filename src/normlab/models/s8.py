"""The reference study's "S8" network, exactly as specified, for any norm.

    C1 C2 c3 P1 C4 C5 C6 c7 P2 C8 C9 C10 GAP c11

C = 3x3 conv (padding 1, no bias) -> norm -> ReLU -> Dropout2d; c = 1x1 conv to 10 channels, no norm;
P = 2x2 max-pool. 48,096 parameters with bn, gn or ln.
"""
from __future__ import annotations

from torch import nn
from collections import OrderedDict

from ..norms import NormLayer
from .common import GlobalAvgPool, Normalize

# (name, in, out, GroupNorm groups) per 3x3 block; the groups are the reference GN model's.
S8_BLOCKS = (
    (("C1", 3, 32, 4), ("C2", 32, 32, 4)),
    (("C4", 10, 16, 4), ("C5", 16, 32, 8), ("C6", 32, 32, 8)),
    (("C8", 10, 32, 4), ("C9", 32, 32, 4), ("C10", 32, 32, 4)),
)
# The reference's own Layer Norm model: 16 channels everywhere, LayerNorm([C, H, W]), dropout 0.1.
S8_REFERENCE_LN_BLOCKS = (
    (("C1", 3, 16, None), ("C2", 16, 16, None)),
    (("C4", 10, 16, None), ("C5", 16, 16, None), ("C6", 16, 16, None)),
    (("C8", 10, 16, None), ("C9", 16, 16, None), ("C10", 16, 16, None)),
)
TRANSITIONS = ("c3", "c7", "c11")  # 1x1 convs to 10 channels closing each stage


class ConvBlock(nn.Sequential):
    def __init__(self, cin: int, cout: int, norm_layer: NormLayer, groups: int | None, spatial: int, dropout: float):
        conv = getattr(norm_layer, "conv", nn.Conv2d)  # a norm may ask for its own conv (normlab.norms)
        super().__init__(
            conv(cin, cout, 3, padding=1, bias=False),
            norm_layer(cout, groups=groups, spatial=spatial),
            nn.ReLU(inplace=True),
            nn.Dropout2d(dropout),
        )


class S8(nn.Module):
    def __init__(self, norm_layer: NormLayer, *, blocks=S8_BLOCKS, dropout: float = 0.05, num_classes: int = 10):
        super().__init__()
        self.normalize = Normalize()
        layers: list[tuple[str, nn.Module]] = []
        spatial = 32
        for stage, (stage_blocks, tname) in enumerate(zip(blocks, TRANSITIONS)):
            for name, cin, cout, groups in stage_blocks:
                layers.append((name, ConvBlock(cin, cout, norm_layer, groups, spatial, dropout)))
            layers.append((tname, nn.Conv2d(stage_blocks[-1][2], num_classes, 1, bias=False)))
            if stage < 2:
                layers.append((f"P{stage + 1}", nn.MaxPool2d(2)))
                spatial //= 2
            else:
                # GAP sits before c11 in the reference; both are linear so order does not change
                # the function, but we keep the reference's order: C10 -> GAP -> c11.
                layers.insert(len(layers) - 1, ("GAP", GlobalAvgPool()))
        self.layers = nn.Sequential(OrderedDict(layers))
        self.flatten = nn.Flatten()

    def forward(self, x):
        return self.flatten(self.layers(self.normalize(x)))


def s8(norm_layer: NormLayer) -> S8:
    return S8(norm_layer)


def s8_reference_ln(norm_layer: NormLayer) -> S8:
    """The reference's LN model (111,568 parameters): over budget, kept to show why. ``norm_layer`` must be
    the elementwise LayerNorm (``ln-elementwise``); the registry passes it for norm ``ln``."""
    return S8(norm_layer, blocks=S8_REFERENCE_LN_BLOCKS, dropout=0.1)
