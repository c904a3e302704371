"""Fully-connected AutoEncoder, the MLPerf Tiny anomaly-detection reference network."""

import torch
from torch import nn

# Widths of the nine hidden layers (each Linear + BatchNorm1d + ReLU).
_HIDDEN: tuple[int, ...] = (128, 128, 128, 128, 8, 128, 128, 128, 128)


class LinearBNReLU(nn.Module):
    """Linear (with bias) followed by BatchNorm1d and ReLU."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)
        self.bn = nn.BatchNorm1d(out_features)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.linear(x)))


class AutoEncoder(nn.Module):
    """Dense AutoEncoder of MLPerf Tiny anomaly detection (ToyCar).

    Input: ``(N, input_dim)``; output: ``(N, input_dim)`` reconstruction.

    Layers: nine Linear + BatchNorm1d + ReLU blocks, input_dim->128, 3 x 128->128,
    128->8 (the bottleneck, also with BN + ReLU), 8->128, 3 x 128->128; then
    Linear 128->input_dim.

    With ``input_dim=640``: 267,928 parameters in total (BatchNorm included); 265,864
    linear parameters (bias included, BN excluded) and 265,864 MACs per sample.
    """

    def __init__(self, input_dim: int = 640) -> None:
        super().__init__()
        layers = []
        in_features = input_dim
        for out_features in _HIDDEN:
            layers.append(LinearBNReLU(in_features, out_features))
            in_features = out_features
        self.hidden = nn.Sequential(*layers)
        self.output = nn.Linear(in_features, input_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.hidden(x))
