"""Stochastic depth (torchvision.ops) and dropout on a residual branch keep it searchable."""

import torch
from torch import nn
from torchvision.ops import StochasticDepth

from lightning_dnas import PIT
from tests.support import assert_faithful


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8))
        self.branch = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8),
                                    nn.Dropout(0.1))  # fmt: skip
        self.drop_path = StochasticDepth(0.2, "row")
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        x = self.stem(x)
        return self.head(torch.relu(x + self.drop_path(self.branch(x))))


def test_stochastic_depth_branch_is_searched():
    search = PIT(Block(), torch.randn(2, 3, 5, 5))
    assert set(search.channel_masks) == {"stem/0"}


def test_stochastic_depth_exports_exactly():
    assert_faithful(Block(), torch.randn(2, 3, 5, 5))
