"""ResNet-8, the MLPerf Tiny image-classification (CIFAR-10) reference network."""

import torch
from torch import nn


class ConvBNReLU(nn.Module):
    """Bias-free 3x3 convolution followed by BatchNorm2d and ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False
        )
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


class ResidualStack(nn.Module):
    """One ResNet-8 residual stack.

    Main path: conv3x3 (stride ``stride``, no bias) + BN + ReLU, conv3x3 (with bias) + BN.
    Shortcut: identity when ``stride == 1`` and the channel count is unchanged, otherwise a
    1x1 convolution with stride ``stride`` and bias, without BN. The two paths are added and
    followed by a ReLU.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv_bn_relu = ConvBNReLU(in_channels, out_channels, stride)
        self.conv = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=True)
        self.bn = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module
        if stride == 1 and in_channels == out_channels:
            self.shortcut = nn.Identity()
        else:
            self.shortcut = nn.Conv2d(
                in_channels, out_channels, kernel_size=1, stride=stride, bias=True
            )
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(self.conv(self.conv_bn_relu(x)))
        return self.relu(y + self.shortcut(x))


class ResNet8(nn.Module):
    """ResNet-8 of MLPerf Tiny image classification.

    Input: ``(N, 3, 32, 32)``; output: ``(N, num_classes)`` logits.

    Layers:

    - stem: conv3x3 3->16 (no bias) + BN + ReLU;
    - stack1: conv3x3 16->16 stride 1 (no bias) + BN + ReLU, conv3x3 16->16 (bias) + BN,
      identity shortcut, add, ReLU;
    - stack2: as stack1 with 16->32, stride 2 and a 1x1 stride-2 conv shortcut (bias, no BN);
    - stack3: as stack2 with 32->64;
    - AvgPool2d(8), flatten, Linear 64->num_classes.

    With ``num_classes=10``: 78,058 parameters in total (BatchNorm included); 77,578
    conv+linear parameters (bias included, BN excluded) and 12,542,602 MACs per sample
    (conv+linear parameters including bias times output spatial positions).
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = ConvBNReLU(3, 16)
        self.stack1 = ResidualStack(16, 16, stride=1)
        self.stack2 = ResidualStack(16, 32, stride=2)
        self.stack3 = ResidualStack(32, 64, stride=2)
        self.avgpool = nn.AvgPool2d(8)
        self.classifier = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stack3(self.stack2(self.stack1(self.stem(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return self.classifier(x)
