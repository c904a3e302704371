"""Basic indexing moves the channel dim as dims are dropped or added before it; indexing
the channel dim itself keeps those channels whole."""

import pytest
import torch
from torch import nn

from tests.support import assert_faithful

X = torch.randn(2, 3, 6, 6)


class Indexed(nn.Module):
    def __init__(self, how: str) -> None:
        super().__init__()
        self.how = how
        self.conv = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU())
        self.head = nn.Conv2d(6 if how != "channels" else 4, 2, 1)

    def forward(self, x):
        y = self.conv(x)
        if self.how == "spatial":
            y = y[:, :, 1:, ::2]
        elif self.how == "ellipsis":
            y = y[..., None][..., 0]
        else:
            y = y[:, :4]
        return self.head(y)


@pytest.mark.parametrize("how", ["spatial", "ellipsis"])
def test_indexing_other_dims_keeps_the_group(how):
    search = assert_faithful(Indexed(how), X)
    assert set(search.channel_masks) == {"conv/0"}


def test_indexing_the_channel_dim_freezes():
    with pytest.warns(UserWarning, match="indexing of the channel dim"):
        search = assert_faithful(Indexed("channels"), X)
    assert set(search.channel_masks) == set()
