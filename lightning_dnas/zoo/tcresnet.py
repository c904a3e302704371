"""TC-ResNet14, the temporal keyword-spotting network of eml-eda/pytorch-benchmarks."""

from collections.abc import Sequence
from itertools import pairwise

import torch
from torch import nn


class CausalConv1d(nn.Module):
    """Left zero-padding of ``(kernel_size - 1) * dilation`` followed by a Conv1d with bias,
    so that the output length is ``ceil(input length / stride)``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        dilation: int = 1,
    ) -> None:
        super().__init__()
        self.pad = nn.ConstantPad1d(((kernel_size - 1) * dilation, 0), 0.0)
        self.conv = nn.Conv1d(
            in_channels, out_channels, kernel_size, stride=stride, dilation=dilation
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.pad(x))


class TemporalBlock(nn.Module):
    """Residual temporal block of TC-ResNet14.

    Main path: causal conv (kernel ``kernel_size``, stride ``stride``) + BN + ReLU, causal
    conv (kernel ``kernel_size``, dilation ``dilation``) + BN. The first conv is dilated by
    ``dilation`` too, except in a strided block, where it is not dilated. Shortcut: 1x1 conv
    with stride ``stride`` (bias) + BN + ReLU. The two paths are added and followed by a ReLU.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int,
        dilation: int,
    ) -> None:
        super().__init__()
        first_dilation = 1 if stride > 1 else dilation
        self.conv1 = CausalConv1d(
            in_channels, out_channels, kernel_size, stride=stride, dilation=first_dilation
        )
        self.bn1 = nn.BatchNorm1d(out_channels)
        self.relu1 = nn.ReLU()
        self.conv2 = CausalConv1d(out_channels, out_channels, kernel_size, dilation=dilation)
        self.bn2 = nn.BatchNorm1d(out_channels)
        self.shortcut_conv = nn.Conv1d(in_channels, out_channels, kernel_size=1, stride=stride)
        self.shortcut_bn = nn.BatchNorm1d(out_channels)
        self.shortcut_relu = nn.ReLU()
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        shortcut = self.shortcut_relu(self.shortcut_bn(self.shortcut_conv(x)))
        return self.relu(y + shortcut)


class TCResNet14(nn.Module):
    """TC-ResNet14 as defined in eml-eda/pytorch-benchmarks
    (``pytorch_benchmarks/keyword_spotting/model.py``, default ``tc_resnet_14`` config).

    Input: ``(N, input_channels, input_length)``, by default the 10x49 MFCC read as 10
    channels of length 49; output: ``(N, num_classes)`` logits. The port applies
    ``log_softmax`` at the end of ``forward``; it is left out here so that all zoo models
    return logits (cross-entropy on either gives the same loss).

    Layers (all convs Conv1d with bias; ``c = channels``):

    - stem: causal conv kernel 3, input_channels->c[0] (no BN, no ReLU);
    - six :class:`TemporalBlock` s, block ``i`` maps c[i]->c[i+1] with kernel
      ``kernel_size`` and dilation ``2**i``; even blocks (0, 2, 4) have stride 2 (length
      49 -> 25 -> 13 -> 7) and odd blocks stride 1;
    - AvgPool1d(2), Dropout ``dropout``, flatten, Linear c[-1]*3->num_classes.

    With the defaults (``channels=(49, 36, 36, 48, 48, 72, 72)``, ``kernel_size=9``,
    ``num_classes=12``): 322,363 parameters in total (BatchNorm included); 320,491
    conv+linear parameters (bias included, BN excluded) and 3,758,683 MACs per sample
    (conv+linear parameters including bias times output positions).
    """

    def __init__(
        self,
        num_classes: int = 12,
        input_channels: int = 10,
        input_length: int = 49,
        channels: Sequence[int] = (49, 36, 36, 48, 48, 72, 72),
        kernel_size: int = 9,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.stem = CausalConv1d(input_channels, channels[0], kernel_size=3)
        blocks = []
        length = input_length
        for i, (in_channels, out_channels) in enumerate(pairwise(channels)):
            stride = 2 if i % 2 == 0 else 1
            blocks.append(TemporalBlock(in_channels, out_channels, kernel_size, stride, 2**i))
            length = (length - 1) // stride + 1
        self.blocks = nn.Sequential(*blocks)
        self.avgpool = nn.AvgPool1d(2)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(channels[-1] * (length // 2), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(self.avgpool(self.blocks(self.stem(x))))
        return self.classifier(torch.flatten(x, 1))
