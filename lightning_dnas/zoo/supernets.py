"""SuperNet variants of the MLPerf Tiny seed models (thesis chapter 5, SPEC section 7).

Each seed layer that the thesis searches is replaced by a
:class:`~lightning_dnas.nas.supernet.SuperNetModule` whose named candidates are taken
from :data:`~lightning_dnas.zoo.supernet_blocks.CANDIDATE_NAMES`:

- ``"conv3x3"``: conv 3x3 + BatchNorm (+ ReLU), the seed layer's receptive field;
- ``"conv5x5"``: conv 5x5 + BatchNorm (+ ReLU), a larger receptive field;
- ``"dw_sep"``: depthwise 3x3 + BatchNorm + ReLU, then pointwise 1x1 + BatchNorm (+ ReLU);
- ``"identity"``: ``nn.Identity()``, only where input and output channels are equal and
  the stride is 1 (and, for ResNet-8, only where the thesis' code lists it).

Every candidate carries its own BatchNorm (and ReLU where the seed layer has one),
never shared between candidates (thesis 5.1.1: a shared BN after the mixture made the
fine-tuning collapse to chance accuracy). Strides sit on the first convolution of a
candidate (the depthwise one for ``"dw_sep"``) and paddings are ``kernel_size // 2``, so
all candidates of a choice return the same shape.

The structures follow the thesis' own code: PLiNIO ``unit_test/models/icl_sn_model.py``
(ResNet-8), pytorch-benchmarks ``keyword_spotting/kws_sn_model.py`` (DS-CNN, thesis fig.
5.2) and ``visual_wake_words/vww_sn_model.py`` (MobileNetV1); each class documents where
and why it departs from them. Weights use PyTorch's default initialisation, as the seed
models of :mod:`lightning_dnas.zoo` do (the thesis' ICL and VWW code applies
``kaiming_normal_`` to the conv weights).

All three networks are ``torch.fx``-traceable at the top level with a tracer that keeps
:class:`SuperNetModule` as a leaf.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn

from lightning_dnas.nas.supernet import SuperNetModule
from lightning_dnas.zoo.dscnn import DSCNNStem
from lightning_dnas.zoo.mobilenetv1 import ConvBNReLU, DepthwiseSeparableBlock, MobileNetV1
from lightning_dnas.zoo.supernet_blocks import ConvBNAct, standard_choice

__all__ = ["DSCNNSuperNet", "MobileNetV1SuperNet", "ResNet8SuperNet"]

class SuperNetResidualStack(nn.Module):
    """A ResNet-8 residual stack whose two main-path convolutions are choices.

    ``conv1``: :func:`standard_choice` ``in->out`` with ``stride``, candidates ending in
    BN + ReLU, no identity (as in the thesis' code). ``conv2``: ``out->out`` stride 1,
    candidates ending in BN without ReLU (the ReLU follows the addition), with identity.
    Shortcut: identity when the shape is unchanged, else a plain 1x1 conv (stride,
    bias), followed by its own BatchNorm when ``shortcut_bn``. Output: ``relu(main +
    shortcut)``.
    """

    def __init__(
        self, in_channels: int, out_channels: int, stride: int, shortcut_bn: bool = True
    ) -> None:
        super().__init__()
        self.conv1 = standard_choice(in_channels, out_channels, stride, identity=False)
        self.conv2 = standard_choice(out_channels, out_channels, relu=False, identity=True)
        self.shortcut: nn.Module
        if stride == 1 and in_channels == out_channels:
            self.shortcut = nn.Identity()
        else:
            conv = nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=True)
            if shortcut_bn:
                self.shortcut = nn.Sequential(
                    OrderedDict(conv=conv, bn=nn.BatchNorm2d(out_channels))
                )
            else:
                self.shortcut = conv
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        """``relu(conv2(conv1(x)) + shortcut(x))``."""
        return self.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


class ResNet8SuperNet(nn.Module):
    """ResNet-8 SuperNet of the thesis' ICL experiments (PLiNIO ``icl_sn_model.py``).

    Input: ``(N, 3, 32, 32)``; output: ``(N, num_classes)`` logits.

    Every convolution except the residual 1x1 shortcuts is a :class:`SuperNetModule`,
    7 in all (``stem``, then ``conv1``/``conv2`` of each of the 3 stacks):

    - ``stem``: 3->16 stride 1, ``{conv3x3, conv5x5, dw_sep}``, each + BN + ReLU;
    - ``stackK.conv1``: 16->16 s1 / 16->32 s2 / 32->64 s2, ``{conv3x3, conv5x5, dw_sep}``,
      each + BN + ReLU (no identity, even for 16->16 s1, as in the thesis' code);
    - ``stackK.conv2``: 16->16 / 32->32 / 64->64 stride 1,
      ``{conv3x3, conv5x5, dw_sep, identity}``, each conv candidate ending in BN without
      ReLU (the ReLU follows the residual addition);
    - shortcuts: identity (stack 1), 1x1 stride-2 conv with bias (stacks 2, 3), followed by
      a BatchNorm when ``shortcut_bn`` (thesis code; ``False`` gives the seed ResNet-8's
      plain shortcut);
    - AvgPool2d(8), flatten, Linear 64->num_classes.

    24 candidates (3 identities). Every conv has a bias. ``dw_sep`` strides on its
    depthwise conv. With ``num_classes=10`` and ``shortcut_bn=True``: 296,230 parameters
    (296,206 weights, BN included, + 24 architecture logits); per choice (weights incl.
    BN, candidates in the order above): stem 480 / 1,248 / 132; stack1 conv1 2,352 /
    6,448 / 496; stack1 conv2 2,352 / 6,448 / 496 / 0; stack2 conv1 4,704 / 12,896 / 800;
    stack2 conv2 9,312 / 25,696 / 1,504 / 0; stack3 conv1 18,624 / 51,392 / 2,624;
    stack3 conv2 37,056 / 102,592 / 5,056 / 0; outside the choices 3,498 (shortcut convs
    544 + 2,112, their BN 64 + 128, classifier 650). ``shortcut_bn=False``: 296,038.

    Differences from the thesis' code, and why:

    - ``conv1`` of stack 1 (16->16, stride 1) has no identity candidate although the
      shapes would allow it: the thesis' ``ConvBlock`` has it commented out;
    - none in the shortcuts by default: the thesis' code adds a BatchNorm after each 1x1
      shortcut conv, which the seed ResNet-8 (and SPEC section 7) lacks;
      ``shortcut_bn=False`` gives the seed's plain shortcut;
    - conv candidates keep the thesis' bias (the seed's first conv of each stack and the
      stem are bias-free): choosing ``conv3x3`` everywhere with those biases at zero and
      ``shortcut_bn=False`` gives exactly the seed :class:`~lightning_dnas.zoo.ResNet8`.
    """

    def __init__(self, num_classes: int = 10, shortcut_bn: bool = True) -> None:
        super().__init__()
        self.stem = standard_choice(3, 16, 1, identity=False)
        self.stack1 = SuperNetResidualStack(16, 16, 1, shortcut_bn)
        self.stack2 = SuperNetResidualStack(16, 32, 2, shortcut_bn)
        self.stack3 = SuperNetResidualStack(32, 64, 2, shortcut_bn)
        self.avgpool = nn.AvgPool2d(8)
        self.classifier = nn.Linear(64, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Logits of a ``(N, 3, 32, 32)`` batch."""
        x = self.stack3(self.stack2(self.stack1(self.stem(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return self.classifier(x)


# --------------------------------------------------------------------------- DS-CNN

_DSCNN_CHANNELS = 64
_DSCNN_BLOCKS = 4


class DSCNNSuperNet(nn.Module):
    """DS-CNN SuperNet of the thesis' KWS experiments (thesis fig. 5.2, pytorch-benchmarks
    ``keyword_spotting/kws_sn_model.py``), built on :class:`~lightning_dnas.zoo.DSCNNThesis`.

    Input: ``(N, 1, 49, 10)``; output: ``(N, num_classes)`` logits (``(num_classes,)`` for
    ``N == 1``: ``torch.squeeze`` without dim, as in ``DSCNNThesis`` and the thesis).

    Layers:

    - ``stem``: conv (10,4) stride 2 padding (5,1) 1->64 (bias) + BN + ReLU + Dropout 0.2
      (the zoo's ``DSCNNStem``), output 64x25x5;
    - ``blocks``: 4 x [``choice``: 64->64 ``{conv3x3, conv5x5, dw_sep, identity}``, every
      conv with bias, each conv candidate ending in its own BN + ReLU; ``conv``: the kept
      1x1 conv 64->64 (bias) + BN + ReLU]. The choice replaces ``DSCNNThesis``'
      depthwise -> pointwise -> BN -> ReLU;
    - Dropout 0.4, AvgPool2d((25,5)), ``torch.squeeze``, Linear 64->num_classes.

    4 choices, 16 candidates (4 identities). ``bn_momentum`` is the PyTorch momentum of
    every BatchNorm (the thesis' 0.99 is a Keras value mis-ported, see ``DSCNNThesis``;
    default 0.1). With ``num_classes=12``: 599,516 parameters (599,500 weights, BN
    included, + 16 architecture logits); per choice: conv3x3 37,056 (36,928 conv + 128
    BN), conv5x5 102,592 (102,464 + 128), dw_sep 5,056 (dw 640 + BN 128, pw 4,160 + BN
    128), identity 0; outside the choices 20,684 (stem 2,752, 4 kept 1x1 blocks 4 x 4,288,
    classifier 780).

    Differences from the thesis' code: none in structure (its candidate order, biases,
    per-candidate BN + ReLU and identities are kept); only the BN momentum default.

    ``shared_bn=True`` builds the ablation of thesis section 5.1.1 (an older variant in
    PLiNIO's ``unit_test/models/kws_sn_model.py``): bare candidates (conv3x3, conv5x5,
    depthwise 3x3 -> pointwise 1x1, identity; convs with bias, no BatchNorm inside) and one
    BN + ReLU after the mixture (``norm``, ``act``), shared by all candidates. The thesis
    reports that fine-tuning this variant collapsed (8.34% on KWS).
    """

    def __init__(
        self, num_classes: int = 12, bn_momentum: float = 0.1, shared_bn: bool = False
    ) -> None:
        super().__init__()
        self.stem = DSCNNStem(bn_momentum)
        block = _shared_bn_block if shared_bn else _per_candidate_bn_block
        self.blocks = nn.Sequential(*(block(bn_momentum) for _ in range(_DSCNN_BLOCKS)))
        self.dropout = nn.Dropout(0.4)
        self.avgpool = nn.AvgPool2d((25, 5))
        self.classifier = nn.Linear(_DSCNN_CHANNELS, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Logits of a ``(N, 1, 49, 10)`` MFCC batch."""
        x = self.dropout(self.blocks(self.stem(x)))
        x = torch.squeeze(self.avgpool(x))
        return self.classifier(x)


# --------------------------------------------------------------------------- MobileNetV1


def _per_candidate_bn_block(bn_momentum: float) -> nn.Sequential:
    """``choice`` (the thesis' candidates, each with its own BN + ReLU) -> the kept 1x1."""
    width = _DSCNN_CHANNELS
    return nn.Sequential(OrderedDict(
        choice=standard_choice(width, width, bn_momentum=bn_momentum),
        conv=ConvBNAct(width, width, 1, bn_momentum=bn_momentum),
    ))  # fmt: skip


def _shared_bn_block(bn_momentum: float) -> nn.Sequential:
    """``choice`` of bare candidates -> one shared BN + ReLU -> the kept 1x1."""
    width = _DSCNN_CHANNELS
    choice = SuperNetModule({
        "conv3x3": nn.Conv2d(width, width, 3, padding=1),
        "conv5x5": nn.Conv2d(width, width, 5, padding=2),
        "dw_sep": nn.Sequential(nn.Conv2d(width, width, 3, padding=1, groups=width),
                                nn.Conv2d(width, width, 1)),
        "identity": nn.Identity(),
    })  # fmt: skip
    return nn.Sequential(OrderedDict(
        choice=choice, norm=nn.BatchNorm2d(width, momentum=bn_momentum), act=nn.ReLU(),
        conv=ConvBNAct(width, width, 1, bn_momentum=bn_momentum),
    ))  # fmt: skip


def _mobilenet_choice(in_channels: int, out_channels: int, stride: int) -> SuperNetModule:
    """VWW choice: the seed's own bias-free blocks as candidates (+ identity where it fits)."""
    candidates: dict[str, nn.Module] = {
        "conv3x3": ConvBNReLU(in_channels, out_channels, 3, stride),
        "conv5x5": ConvBNReLU(in_channels, out_channels, 5, stride),
        "dw_sep": DepthwiseSeparableBlock(in_channels, out_channels, stride),
    }
    if in_channels == out_channels and stride == 1:
        candidates["identity"] = nn.Identity()
    return SuperNetModule(candidates)


class MobileNetV1SuperNet(MobileNetV1):
    """MobileNetV1 SuperNet of the thesis' VWW experiments (pytorch-benchmarks
    ``visual_wake_words/vww_sn_model.py``), built on :class:`~lightning_dnas.zoo.MobileNetV1`.

    Input: ``(N, 3, 96, 96)``; output: ``(N, num_classes)`` logits. Channels are the
    width-1.0 ones times ``width`` (truncated to int), as in ``MobileNetV1``.

    - ``stem``: conv3x3 stride 2, 3->8 + BN + ReLU (not searched);
    - ``blocks``: each of the 13 depthwise-separable blocks (8->16, 16->32 s2, 32->32,
      32->64 s2, 64->64, 64->128 s2, 5 x 128->128, 128->256 s2, 256->256 at width 0.25)
      is a choice ``{conv3x3, conv5x5, dw_sep[, identity]}``: conv kxk (stride) + BN +
      ReLU, the seed's depthwise-separable block (depthwise 3x3 stride + BN + ReLU,
      pointwise 1x1 + BN + ReLU), and identity for the 8 blocks with in == out channels
      and stride 1 (all but the first and the 4 stride-2 ones); no conv has a bias;
    - AvgPool2d(3), flatten, Linear 256->num_classes.

    13 choices, 47 candidates (8 identities). Per choice ``c_in->c_out`` (weights incl.
    BN): conv kxk ``c_out*c_in*k*k + 2*c_out``, dw_sep ``11*c_in + c_in*c_out + 2*c_out``,
    identity 0 (e.g. 128->128: 147,712 / 409,856 / 18,048 / 0). With ``num_classes=2,
    width=0.25``: 6,891,201 parameters (6,891,154 weights, BN included, + 47 architecture
    logits); outside the choices 746 (stem 232, classifier 514). Choosing ``dw_sep`` everywhere
    with the seed's weights gives exactly :class:`~lightning_dnas.zoo.MobileNetV1`.

    Differences from the thesis' code, and why:

    - flatten instead of ``torch.squeeze`` before the classifier, as the zoo's
      ``MobileNetV1`` (a batch of one keeps its batch dimension);
    - the candidates are the pytorch-benchmarks version (each with its own BN + ReLU, no
      bias), which the thesis describes; PLiNIO's ``unit_test/models/vww_sn_model.py``
      has an earlier variant whose conv3x3/conv5x5 candidates are bare convs with bias
      and no BN/ReLU.
    """

    def __init__(self, num_classes: int = 2, width: float = 0.25) -> None:
        super().__init__(num_classes, width, block=_mobilenet_choice)
