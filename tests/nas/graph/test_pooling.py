"""Pooling keeps the channels on dim 1 (modules and functions); a reduction over other dims
keeps the group, one over the channel dim keeps its channels whole."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.support import assert_faithful

X = torch.randn(2, 3, 8, 8)


class Pooled(nn.Module):
    def __init__(self, pool) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU())
        self.pool = pool
        self.head = nn.Conv2d(6, 2, 1)

    def forward(self, x):
        x = self.conv(x)
        x = F.max_pool2d(x, 2) if self.pool is None else self.pool(x)
        return self.head(x)


@pytest.mark.parametrize(
    "pool",
    [nn.MaxPool2d(2), nn.AvgPool2d(2), nn.AdaptiveAvgPool2d(1), nn.LPPool2d(2, 2), None],
    ids=["MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "LPPool2d", "F.max_pool2d"],
)
def test_pooling_keeps_the_group(pool):
    search = assert_faithful(Pooled(pool), X)
    assert set(search.channel_masks) == {"conv/0"}


class Reduced(nn.Module):
    def __init__(self, dims) -> None:
        super().__init__()
        self.dims = dims
        self.conv = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU())
        self.head = nn.Linear(6, 2)

    def forward(self, x):
        y = self.conv(x)
        if self.dims == "channels":
            return self.head(y.mean(1).flatten(1)[:, :6])
        return self.head(y.mean(self.dims))


def test_reduction_over_spatial_dims_keeps_the_group():
    search = assert_faithful(Reduced((2, 3)), X)
    assert set(search.channel_masks) == {"conv/0"}


def test_reduction_over_the_channel_dim_freezes():
    with pytest.warns(UserWarning, match="reduction over the channel dim"):
        search = assert_faithful(Reduced("channels"), X)
    assert set(search.channel_masks) == set()
