"""permute/transpose moving the channel dim: a channels-last block (Linear on the last dim)."""

import pytest
import torch
from torch import nn

from tests.support import assert_faithful

X = torch.randn(2, 3, 4, 4)


class ChannelsLast(nn.Module):
    """conv -> permute(0,2,3,1) -> Linear -> GELU -> Linear -> permute back -> residual."""

    def __init__(self, norm: bool = False) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8))
        self.norm = nn.LayerNorm(8) if norm else nn.Identity()
        self.up, self.down = nn.Linear(8, 16), nn.Linear(16, 8)
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        x = self.stem(x)
        y = self.norm(x.permute(0, 2, 3, 1))
        y = self.down(nn.functional.gelu(self.up(y)))
        return self.head(x + y.transpose(1, 3).transpose(2, 3))


def test_channels_last_block_is_searched():
    search = assert_faithful(ChannelsLast(), X)
    assert set(search.channel_masks) == {"stem/0", "up"}  # stem and down share the residual


def test_layer_norm_over_channels_last_keeps_the_residual_stream_searched():
    search = assert_faithful(ChannelsLast(norm=True), X)
    assert set(search.channel_masks) == {"stem/0", "up"}  # computed over the kept channels


class ChannelsLastUnknown(nn.Module):
    """An op the analysis does not know, on channels-last data: its output is a new frozen
    group *on the last dim*, so a cat with searched channels-last data stays searchable."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 4, 1), nn.Conv2d(3, 5, 1)
        self.fc = nn.Linear(9, 2)

    def forward(self, x):
        a = torch.special.expit(self.a(x).permute(0, 2, 3, 1))  # unknown to the analysis
        b = torch.relu(self.b(x).permute(0, 2, 3, 1))
        return self.fc(torch.cat([a, b], dim=-1))


def test_unknown_channels_last_op_keeps_the_channel_dim():
    with pytest.warns(UserWarning, match="special_expit.*output channels of a are kept whole"):
        search = assert_faithful(ChannelsLastUnknown(), X)
    assert set(search.channel_masks) == {"b"}
