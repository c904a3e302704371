"""DS-CNN keyword-spotting networks (input: 49x10 MFCC as a 1-channel image)."""

import torch
from torch import nn

_CHANNELS = 64
_NUM_BLOCKS = 4


class DSCNNStem(nn.Module):
    """Conv (10,4) stride 2 padding (5,1) 1->64 (bias) + BN + ReLU + Dropout 0.2."""

    def __init__(self, bn_momentum: float = 0.1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, _CHANNELS, kernel_size=(10, 4), stride=2, padding=(5, 1))
        self.bn = nn.BatchNorm2d(_CHANNELS, momentum=bn_momentum)
        self.relu = nn.ReLU()
        self.dropout = nn.Dropout(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.relu(self.bn(self.conv(x))))


class DepthwiseSeparableBlock(nn.Module):
    """MLPerf Tiny DS-CNN block.

    Depthwise 3x3 (padding 1, bias) + BN + ReLU, then pointwise 1x1 (bias) + BN + ReLU.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(channels, channels, kernel_size=3, padding=1, groups=channels)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu1 = nn.ReLU()
        self.pointwise = nn.Conv2d(channels, channels, kernel_size=1)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.bn1(self.depthwise(x)))
        return self.relu2(self.bn2(self.pointwise(x)))


class ThesisBlock(nn.Module):
    """DS-CNN block of the eml-eda/pytorch-benchmarks port.

    Depthwise 3x3 (padding 1, bias, no BN) -> pointwise 1x1 (bias) -> BN -> ReLU ->
    1x1 conv (bias) -> BN -> ReLU.
    """

    def __init__(self, channels: int, bn_momentum: float = 0.1) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(channels, channels, kernel_size=3, padding=1, groups=channels)
        self.pointwise = nn.Conv2d(channels, channels, kernel_size=1)
        self.bn1 = nn.BatchNorm2d(channels, momentum=bn_momentum)
        self.relu1 = nn.ReLU()
        self.conv = nn.Conv2d(channels, channels, kernel_size=1)
        self.bn2 = nn.BatchNorm2d(channels, momentum=bn_momentum)
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.bn1(self.pointwise(self.depthwise(x))))
        return self.relu2(self.bn2(self.conv(x)))


class DSCNN(nn.Module):
    """DS-CNN of the MLPerf Tiny keyword-spotting reference (a Keras model, so every conv
    has a bias).

    Input: ``(N, 1, 49, 10)``; output: ``(N, num_classes)`` logits.

    Layers:

    - stem: conv (10,4) stride 2 padding (5,1) 1->64 (bias) + BN + ReLU + Dropout 0.2
      (output 64x25x5);
    - 4 x [depthwise 3x3 padding 1 (bias) + BN + ReLU, pointwise 1x1 64->64 (bias) + BN
      + ReLU];
    - Dropout 0.4, AvgPool2d((25,5)), flatten, Linear 64->num_classes.

    With ``num_classes=12``: 23,756 parameters in total (BatchNorm included); 22,604
    conv+linear parameters (bias included, BN excluded) and 2,728,780 MACs per sample
    (conv+linear parameters including bias times output spatial positions).
    """

    def __init__(self, num_classes: int = 12) -> None:
        super().__init__()
        self.stem = DSCNNStem()
        self.blocks = nn.Sequential(
            *(DepthwiseSeparableBlock(_CHANNELS) for _ in range(_NUM_BLOCKS))
        )
        self.dropout = nn.Dropout(0.4)
        self.avgpool = nn.AvgPool2d((25, 5))
        self.classifier = nn.Linear(_CHANNELS, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(self.blocks(self.stem(x)))
        x = torch.flatten(self.avgpool(x), 1)
        return self.classifier(x)


class DSCNNThesis(nn.Module):
    """DS-CNN as the thesis ran it: the eml-eda/pytorch-benchmarks port (``DSCnn`` in
    ``pytorch_benchmarks/keyword_spotting/model.py``, thesis fig. 5.1).

    Input: ``(N, 1, 49, 10)``; output: ``(N, num_classes)`` logits (``(num_classes,)``
    for ``N == 1``, see below).

    Layers:

    - stem: conv (10,4) stride 2 padding (5,1) 1->64 (bias) + BN + ReLU + Dropout 0.2;
    - 4 x [depthwise 3x3 padding 1 (bias, no BN) -> pointwise 1x1 64->64 (bias) -> BN ->
      ReLU -> 1x1 conv 64->64 (bias) -> BN -> ReLU];
    - Dropout 0.4, AvgPool2d((25,5)), ``torch.squeeze(x)`` with no dim (as in the port, so
      a batch of one loses its batch dimension too), Linear 64->num_classes.

    ``bn_momentum`` is the momentum of every BatchNorm. The port uses 0.99, a Keras value
    copied verbatim although PyTorch's momentum means the opposite (weight of the new batch
    statistics); the default here is PyTorch's usual 0.1. Pass 0.99 to reproduce the port.

    With ``num_classes=12``: 40,396 parameters in total (BatchNorm included); 39,244
    conv+linear parameters (bias included, BN excluded) and 4,808,780 MACs per sample
    (conv+linear parameters including bias times output spatial positions).
    """

    def __init__(self, num_classes: int = 12, bn_momentum: float = 0.1) -> None:
        super().__init__()
        self.stem = DSCNNStem(bn_momentum)
        self.blocks = nn.Sequential(
            *(ThesisBlock(_CHANNELS, bn_momentum) for _ in range(_NUM_BLOCKS))
        )
        self.dropout = nn.Dropout(0.4)
        self.avgpool = nn.AvgPool2d((25, 5))
        self.classifier = nn.Linear(_CHANNELS, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(self.blocks(self.stem(x)))
        x = torch.squeeze(self.avgpool(x))
        return self.classifier(x)
