"""A channel count read from a shape may size a reshape of the same channels (kept
searched); used for anything else it keeps the counted channels whole."""

import pytest
import torch
from torch import nn

from tests.support import assert_faithful

X = torch.randn(2, 3, 4, 4)


class Counted(nn.Module):
    def __init__(self, how: str) -> None:
        super().__init__()
        self.how = how
        self.conv = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU())
        self.head = nn.Conv1d(6, 2, 1)

    def forward(self, x):
        y = self.conv(x)
        b, c, h, w = y.shape
        if self.how == "scale":
            y = y * c**-0.5
        return self.head(y.view(b, c, h * w))


def test_channel_count_sizing_a_reshape_of_its_channels_is_searched():
    search = assert_faithful(Counted("reshape"), X)
    assert set(search.channel_masks) == {"conv/0"}


def test_channel_count_used_elsewhere_freezes():
    with pytest.warns(UserWarning, match="channel count used outside a reshape"):
        search = assert_faithful(Counted("scale"), X)
    assert set(search.channel_masks) == set()
