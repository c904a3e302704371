"""flatten/view keeping the batch dim: each channel maps to a run of features."""

import torch
from torch import nn

from tests.support import assert_faithful


class Flat(nn.Module):
    def __init__(self, how: str) -> None:
        super().__init__()
        self.how = how
        self.conv = nn.Sequential(nn.Conv2d(2, 6, 3), nn.BatchNorm2d(6), nn.ReLU())
        self.fc = nn.Linear(6 * 3 * 3, 5)

    def forward(self, x):
        y = self.conv(x)
        if self.how == "flatten":
            y = torch.flatten(y, 1)
        elif self.how == "view":
            y = y.view(y.size(0), -1)
        else:
            y = y.reshape(y.shape[0], -1)
        return self.fc(y)


def test_flatten_view_reshape_export_exactly():
    for how in ("flatten", "view", "reshape"):
        assert_faithful(Flat(how), torch.randn(3, 2, 5, 5))
