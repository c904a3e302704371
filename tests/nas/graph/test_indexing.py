"""Basic indexing moves the channel dim as dims are dropped or added before it. A slice of
the channel dim with constant bounds (GhostNet's ``out[:, :k]``, DPN's ``x[:, :k]`` /
``x[:, k:]``) cuts the group at its bounds into pieces searched apart, the export moving
the bounds to the kept widths (the fallback, when the forward cannot be rewritten:
tests/nas/graph/test_cuts.py). Any other index of the channel dim keeps those channels
whole."""

import warnings

import pytest
import torch
from torch import nn

from tests.support import assert_faithful, randomize_masks

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


@pytest.mark.parametrize("how, width, pieces, bounds", [
    ("head", 4, [0, 4, 2], (0, 4)),  # y[:, :4]: channels 0-3 read, 4-5 read by nothing
    ("tail", 4, [2, 4, 0], (2, None)),  # y[:, 2:]
    ("middle", 2, [1, 2, 3], (1, 3)),  # y[:, 1:3]
])  # fmt: skip
def test_constant_channel_slice_is_searched_piece_by_piece(how, width, pieces, bounds):
    """The conv's group is cut at the slice bounds into searched groups of the pieces'
    widths, nothing frozen; the export's slice takes exactly the kept channels of
    ``bounds`` (the head conv reads that many); the spec moves the bounds only when the
    written ones, on the pruned width, would not cut the kept pieces."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing frozen
        search = assert_faithful(Indexed(how, width), X)
    assert sorted(m.alpha.numel() for m in search.channel_masks.values()) == sorted(
        p for p in pieces if p)
    randomize_masks(search, 4)
    spec = search.arch()
    out = spec["modules"].get("conv.0", {}).get("out") or list(range(6))
    start, stop = bounds[0], bounds[1] or 6
    kept = [sum(c < start for c in out), sum(start <= c < stop for c in out),
            sum(c >= stop for c in out)]  # fmt: skip
    exported = search.export()
    assert exported.head.in_channels == kept[1]
    n = sum(kept)  # the written slice on the pruned width
    written = min(start, n), n if bounds[1] is None else min(stop, n)
    moved = kept != [written[0], written[1] - written[0], n - written[1]]
    assert spec.get("cuts") == ({"": [{"call": 0, "op": "getitem", "node": "getitem",
                                       "widths": pieces, "kept": kept, "entry": 1}]}
                                if moved else None)  # fmt: skip


@pytest.mark.parametrize("how, width", [("step", 3), ("negative", 4)])
def test_other_indexing_of_the_channel_dim_freezes(how, width):
    with pytest.warns(UserWarning, match="indexing of the channel dim"):
        search = assert_faithful(Indexed(how, width), X)
    assert set(search.channel_masks) == set()
