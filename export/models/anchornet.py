"""AnchorNet (paper section 3.2, Tables 1 and 2; docs/method.md §1) in PyTorch.

A light multi-scale localizer: a shared head (Table 1) feeds three localization
branches (Table 2) whose logit maps F have receptive fields 63, 95 and 111 at
stride 8. Every convolution has padding 0, so map location (r, c) sees exactly
the input box x0 = 8c, y0 = 8r, x1 = x0 + k, y1 = y0 + k (docs/method.md §2); that
is why residual skips are center-cropped (a corner crop would shift it).

The tables below are the architecture, as data; `Bneck` reads one row and the
model only loops over rows.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
from torch import Tensor, nn

from anchor_edge.bundle.choices import Pooling
from anchor_edge.bundle.schema import Branch as BranchSpec
from anchor_edge.bundle.schema import anchornet_output_names, branch_layout
from anchor_edge.checks import positive_int
from anchor_edge.errors import InputError

Activation = Callable[[], nn.Module]


class BneckConfig(NamedTuple):
    """One bneck row, in the paper's column order (Operator, Exp, Out, SE, NL, s)."""

    kernel: int
    expansion: int
    out: int
    se: bool
    activation: Activation
    stride: int


class StemConfig(NamedTuple):
    """The plain convolution that opens Table 1 (it is not a bneck)."""

    kernel: int
    out: int
    activation: Activation
    stride: int


class BranchConfig(NamedTuple):
    """One block of Table 2: localization rows, then the attention branch's row."""

    receptive_field: int
    localization: tuple[BneckConfig, ...]
    attention: BneckConfig


HS, RE = nn.Hardswish, nn.ReLU

# Table 1, first row: conv2d 3x3, 16 out, HS, stride 2 (224 -> 111).
STEM = StemConfig(kernel=3, out=16, activation=HS, stride=2)

# Table 1, the remaining rows: 111 -> 23, 96 channels, receptive field 47.
HEAD = (
    BneckConfig(3, 16, 16, False, RE, 2),
    BneckConfig(3, 72, 24, False, RE, 2),
    BneckConfig(1, 88, 24, False, RE, 1),
    BneckConfig(1, 96, 40, True, HS, 1),
    BneckConfig(1, 240, 40, True, HS, 1),
    BneckConfig(1, 240, 40, True, HS, 1),
    BneckConfig(1, 120, 48, True, HS, 1),
    BneckConfig(3, 144, 48, True, HS, 1),
    BneckConfig(3, 288, 96, True, HS, 1),
)

# Table 2: one block per branch (B63, B95, B111); the last row of each block
# is the attention branch's bneck, fed by the branch output.
_ATTENTION_ROW = BneckConfig(1, 192, 96, True, HS, 1)
BRANCHES = (
    BranchConfig(63, (BneckConfig(3, 480, 96, True, HS, 1), BneckConfig(1, 576, 96, True, HS, 1)), _ATTENTION_ROW),
    BranchConfig(95, (BneckConfig(3, 480, 96, True, HS, 1), BneckConfig(5, 576, 96, True, HS, 1)), _ATTENTION_ROW),
    BranchConfig(111, (BneckConfig(5, 480, 96, True, HS, 1), BneckConfig(5, 576, 96, True, HS, 1)), _ATTENTION_ROW),
)

BRANCH_RECEPTIVE_FIELDS = tuple(branch.receptive_field for branch in BRANCHES)
BRANCH_STRIDE = 8
POOLINGS = tuple(pooling.value for pooling in Pooling)


def branch_specs(crop: int = 224, pooling: str = "gap") -> tuple[BranchSpec, ...]:
    """The bundle's description of these branches on a `crop` input (names of their outputs included)."""
    return branch_layout(BRANCH_RECEPTIVE_FIELDS, BRANCH_STRIDE, crop, attention=pooling == Pooling.ATTENTION)


OUTPUT_NAMES_GAP = anchornet_output_names(branch_specs())
OUTPUT_NAMES_ATTENTION = anchornet_output_names(branch_specs(pooling="attention"))


def _conv_bn(
    in_channels: int,
    out_channels: int,
    kernel: int,
    *,
    stride: int = 1,
    groups: int = 1,
    activation: Activation | None = None,
) -> nn.Sequential:
    """Conv (padding 0, no bias: BN follows) + BN (+ activation)."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=0, groups=groups, bias=False),
        nn.BatchNorm2d(out_channels),
    ]
    if activation is not None:
        layers.append(activation())
    return nn.Sequential(*layers)


class SqueezeExcite(nn.Module):
    """Channel gate: GAP, 1x1 down + ReLU, 1x1 up, hard-sigmoid (docs/method.md §1).

    The bottleneck width is the *block input* channels // 4 (the authors'
    convention, which gives the paper's parameter count), not expansion // 4.
    """

    def __init__(self, channels: int, squeezed: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.down = nn.Conv2d(channels, squeezed, 1)
        self.relu = nn.ReLU()
        self.up = nn.Conv2d(squeezed, channels, 1)
        self.gate = nn.Hardsigmoid()

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gate(self.up(self.relu(self.down(self.pool(x)))))


class Bneck(nn.Module):
    """MobileNetV3 bottleneck for one table row, with padding 0.

    1x1 expansion (omitted when the expansion width equals the input width),
    depthwise kxk with stride s, optional SE, linear 1x1 projection. With
    stride 1 and equal widths a residual is added; the padding-0 depthwise conv
    shrinks the map by k - 1, so the skip is center-cropped by (k - 1) / 2 per
    side, keeping each output aligned with the centre of its window.
    """

    def __init__(self, config: BneckConfig, in_channels: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        if config.expansion != in_channels:
            layers.append(_conv_bn(in_channels, config.expansion, 1, activation=config.activation))
        layers.append(
            _conv_bn(
                config.expansion,
                config.expansion,
                config.kernel,
                stride=config.stride,
                groups=config.expansion,
                activation=config.activation,
            )
        )
        if config.se:
            layers.append(SqueezeExcite(config.expansion, in_channels // 4))
        layers.append(_conv_bn(config.expansion, config.out, 1))
        self.block = nn.Sequential(*layers)
        self.has_residual = config.stride == 1 and in_channels == config.out
        self.skip_crop = (config.kernel - 1) // 2

    def forward(self, x: Tensor) -> Tensor:
        out = self.block(x)
        if not self.has_residual:
            return out
        c = self.skip_crop
        return out + (x[:, :, c:-c, c:-c] if c else x)


def _spatial_softmax(x: Tensor) -> Tensor:
    """Softmax over all H*W locations of each (N, 1, H, W) map (eqs. 1 and 5)."""
    return x.flatten(2).softmax(-1).view_as(x)


class AttentionBranch(nn.Module):
    """Attention branch (paper eqs. 1-5) and its auxiliary classifier.

    X = bneck(branch output); G = spatial softmax of a 1x1 conv of X to one
    channel; c~ = sum over space of X*G; c = softmax over channels of c~;
    s~ = sum over channels of X*c; S = spatial softmax of s~. The auxiliary FC
    ("an FC behind the attention features X", docs/method.md §1: applied to c~) gives the
    extra training loss.
    """

    def __init__(self, config: BneckConfig, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.bneck = Bneck(config, in_channels)
        # No bias: a constant added before a spatial softmax cancels out.
        self.location_scores = nn.Conv2d(config.out, 1, 1, bias=False)
        self.aux_classifier = nn.Linear(config.out, num_classes)

    def forward(self, branch_features: Tensor) -> tuple[Tensor, Tensor]:
        """Returns S (N, 1, H, W), summing to 1 over space, and c~ (N, C_att)."""
        x = self.bneck(branch_features)
        g = _spatial_softmax(self.location_scores(x))
        channel_features = (x * g).sum((2, 3))
        c = channel_features.softmax(1)
        s = _spatial_softmax((x * c[:, :, None, None]).sum(1, keepdim=True))
        return s, channel_features


class Branch(nn.Module):
    """One localization branch (a Table 2 block): bnecks, then a linear 1x1 conv to the logit map F."""

    def __init__(self, config: BranchConfig, in_channels: int, num_classes: int) -> None:
        super().__init__()
        rows: list[nn.Module] = []
        for row in config.localization:
            rows.append(Bneck(row, in_channels))
            in_channels = row.out
        self.localization = nn.Sequential(*rows)
        self.classifier = nn.Conv2d(in_channels, num_classes, 1)
        self.attention = AttentionBranch(config.attention, in_channels, num_classes)

    def forward(self, head_features: Tensor) -> tuple[Tensor, Tensor]:
        """Returns the branch features (input of the attention branch) and the logit map F."""
        features = self.localization(head_features)
        return features, self.classifier(features)


class TrainingOutputs(NamedTuple):
    """Per-branch logits, each (N, 3, C) in branch order B63, B95, B111.

    attention_logits: sum over space of F*S (the paper's training output);
    gap_logits: plain spatial mean of F (the inference output, docs/method.md §1: supervise
    it too in short runs); aux_logits: the auxiliary FC on c~. logit_maps and
    attention_maps: each branch's F (N, C, H, W) and S (N, 1, H, W), for the
    optional box supervision.
    """

    attention_logits: Tensor
    gap_logits: Tensor
    aux_logits: Tensor
    logit_maps: tuple[Tensor, ...]
    attention_maps: tuple[Tensor, ...]


class AnchorNet(nn.Module):
    """AnchorNet with three branches (B63, B95, B111), stride 8.

    Args:
        num_classes: classes of the logit maps (1000 for ImageNet).
        pooling: how `forward` pools each logit map F into probabilities.
            "gap" (the paper's inference, the default): softmax of the plain
            spatial mean of F; the attention branch is not computed at all.
            "attention": softmax of the sum over space of F*S. The paper writes
            GAP(F*S); since S sums to 1 over space, the S-weighted *sum* is the
            weighted average it means (a mean would shrink logits by H*W).

    Example:
        >>> net = AnchorNet(num_classes=10).eval()
        >>> probs, map_63, map_95, map_111 = net(torch.zeros(1, 3, 224, 224))
        >>> tuple(probs.shape), tuple(map_63.shape[2:]), tuple(map_111.shape[2:])
        ((1, 3, 10), (21, 21), (15, 15))
    """

    def __init__(self, *, num_classes: int = 1000, pooling: str = "gap") -> None:
        super().__init__()
        positive_int("num_classes", num_classes)
        if pooling not in POOLINGS:
            raise InputError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.num_classes = num_classes
        self.pooling = pooling
        self.stem = _conv_bn(3, STEM.out, STEM.kernel, stride=STEM.stride, activation=STEM.activation)
        rows: list[nn.Module] = []
        in_channels = STEM.out
        for row in HEAD:
            rows.append(Bneck(row, in_channels))
            in_channels = row.out
        self.head = nn.Sequential(*rows)
        self.branches = nn.ModuleList(Branch(config, in_channels, num_classes) for config in BRANCHES)

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        """Inference outputs, in the order of OUTPUT_NAMES_GAP / OUTPUT_NAMES_ATTENTION.

        probs (N, 3, C): per-branch class probabilities; map_63, map_95,
        map_111: the logit maps F ((N, C, 21, 21), (17, 17), (15, 15) for a
        224 input); with pooling="attention" also att_63, att_95, att_111: the
        spatial attention maps S, (N, 1, H, W).
        """
        head_features = self.head(self.stem(x))
        probs, maps, attention_maps = [], [], []
        for branch in self.branches:
            features, logit_map = branch(head_features)
            if self.pooling == "attention":
                s, _ = branch.attention(features)
                logits = (logit_map * s).sum((2, 3))
                attention_maps.append(s)
            else:
                logits = logit_map.mean((2, 3))
            probs.append(logits.softmax(1))
            maps.append(logit_map)
        return (torch.stack(probs, 1), *maps, *attention_maps)

    def training_outputs(self, x: Tensor) -> TrainingOutputs:
        """All three logit sets for the training losses (paper section 3.2, docs/method.md §1)."""
        head_features = self.head(self.stem(x))
        attention_logits, gap_logits, aux_logits, logit_maps, attention_maps = [], [], [], [], []
        for branch in self.branches:
            features, logit_map = branch(head_features)
            s, channel_features = branch.attention(features)
            attention_logits.append((logit_map * s).sum((2, 3)))
            gap_logits.append(logit_map.mean((2, 3)))
            aux_logits.append(branch.attention.aux_classifier(channel_features))
            logit_maps.append(logit_map)
            attention_maps.append(s)
        return TrainingOutputs(
            torch.stack(attention_logits, 1),
            torch.stack(gap_logits, 1),
            torch.stack(aux_logits, 1),
            tuple(logit_maps),
            tuple(attention_maps),
        )
