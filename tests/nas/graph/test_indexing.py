"""Basic indexing moves the channel dim as dims are dropped or added before it. A slice of
the channel dim with constant bounds keeps whole the channels before a bound that pruning
would move (GhostNet's ``out[:, :k]``, DPN's ``x[:, :k]`` / ``x[:, k:]``); what an
open-ended slice keeps after its start stays searchable. Any other index of the channel
dim keeps those channels whole."""

import pytest
import torch
from torch import nn

from tests.support import assert_faithful

X = torch.randn(2, 3, 6, 6)


class Indexed(nn.Module):
    def __init__(self, how: str, width: int = 6) -> None:
        super().__init__()
        self.how = how
        self.conv = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU())
        self.head = nn.Conv2d(width, 2, 1)

    def forward(self, x):
        y = self.conv(x)
        if self.how == "spatial":
            y = y[:, :, 1:, ::2]
        elif self.how == "ellipsis":
            y = y[..., None][..., 0]
        elif self.how == "head":
            y = y[:, :4]
        elif self.how == "tail":
            y = y[:, 2:]
        elif self.how == "past_the_end":  # GhostNet's out[:, :out_chs] of exactly out_chs
            y = y[:, 0:9]
        elif self.how == "middle":
            y = y[:, 1:3]
        elif self.how == "step":
            y = y[:, ::2]
        else:
            y = y[:, -4:]
        return self.head(y)


@pytest.mark.parametrize("how", ["spatial", "ellipsis", "past_the_end"])
def test_indexing_other_dims_or_all_channels_keeps_the_group(how):
    search = assert_faithful(Indexed(how), X)
    assert set(search.channel_masks) == {"conv/0"}
    assert search.channel_masks["conv/0"].alpha.numel() == 6


@pytest.mark.parametrize("how, width, kept_whole, searched", [
    ("head", 4, 4, 2),  # channels 0-3 read at fixed positions; 4-5 read by nothing else
    ("tail", 4, 2, 4),  # 2: still starts after channel 1 when 2-5 are pruned
    ("middle", 2, 3, 3),  # 0-2 whole so that 1:3 still finds channels 1 and 2
])  # fmt: skip
def test_constant_channel_slice_keeps_the_channels_before_its_fixed_bound(
    how, width, kept_whole, searched
):
    """The conv's group is cut at the slice bounds: the channels before the fixed bound
    are frozen (one warning), the others form a searched group of their own."""
    with pytest.warns(UserWarning, match="channels before a fixed slice bound"):
        search = assert_faithful(Indexed(how, width), X)
    sizes = [m.alpha.numel() for m in search.channel_masks.values()]
    assert sizes == [searched]
    assert kept_whole + searched == 6
    keep = search.arch()["modules"].get("conv.0", {}).get("out") or list(range(6))
    assert keep[:kept_whole] == list(range(kept_whole))  # under the last random masks


@pytest.mark.parametrize("how, width", [("step", 3), ("negative", 4)])
def test_other_indexing_of_the_channel_dim_freezes(how, width):
    with pytest.warns(UserWarning, match="indexing of the channel dim"):
        search = assert_faithful(Indexed(how, width), X)
    assert set(search.channel_masks) == set()
