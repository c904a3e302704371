"""MobileNetV1, the MLPerf Tiny visual-wake-words reference network."""

from collections.abc import Callable

import torch
from torch import nn

# (output channels at width 1.0, stride of the depthwise conv) of the 13 separable blocks.
_BLOCKS: tuple[tuple[int, int], ...] = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
)


class ConvBNReLU(nn.Module):
    """Bias-free convolution followed by BatchNorm2d and ReLU.

    ``groups == in_channels == out_channels`` makes it a depthwise convolution.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        groups: int = 1,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=kernel_size // 2,
            groups=groups,
            bias=False,
        )
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


class DepthwiseSeparableBlock(nn.Module):
    """Depthwise 3x3 conv (stride ``stride``) + BN + ReLU, then pointwise 1x1 + BN + ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.depthwise = ConvBNReLU(
            in_channels, in_channels, kernel_size=3, stride=stride, groups=in_channels
        )
        self.pointwise = ConvBNReLU(in_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class MobileNetV1(nn.Module):
    """MobileNetV1 of MLPerf Tiny visual wake words.

    Input: ``(N, 3, 96, 96)``; output: ``(N, num_classes)`` logits. Channel counts are the
    width-1.0 ones times ``width`` (truncated to int, as Keras does); with the default
    ``width=0.25``:

    - stem: conv3x3 stride 2, 3->8;
    - 13 depthwise-separable blocks (depthwise 3x3 + pointwise 1x1): 8->16, 16->32 s2,
      32->32, 32->64 s2, 64->64, 64->128 s2, 5 x 128->128, 128->256 s2, 256->256
      (the stride is that of the depthwise conv);
    - every conv has no bias and is followed by BN + ReLU;
    - AvgPool2d(3), flatten, Linear 256->num_classes.

    ``block(in_channels, out_channels, stride)`` builds each of the 13 blocks (the
    SuperNet variant passes a choice there).

    With ``num_classes=2, width=0.25``: 213,586 parameters in total (BatchNorm included);
    208,114 conv+linear parameters (bias included, BN excluded) and 7,489,666 MACs per
    sample (conv+linear parameters including bias times output spatial positions).
    """

    def __init__(
        self,
        num_classes: int = 2,
        width: float = 0.25,
        block: Callable[[int, int, int], nn.Module] = DepthwiseSeparableBlock,
    ) -> None:
        super().__init__()
        in_channels = int(32 * width)
        self.stem = ConvBNReLU(3, in_channels, kernel_size=3, stride=2)
        blocks = []
        for base_channels, stride in _BLOCKS:
            out_channels = int(base_channels * width)
            blocks.append(block(in_channels, out_channels, stride))
            in_channels = out_channels
        self.blocks = nn.Sequential(*blocks)
        self.avgpool = nn.AvgPool2d(3)
        self.classifier = nn.Linear(in_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        x = torch.flatten(self.avgpool(x), 1)
        return self.classifier(x)
