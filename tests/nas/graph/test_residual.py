"""Residual add/sub/mul: all inputs share one channel mask; an operand made of several
groups (a cat) cuts the group of the other operand at its boundaries."""

import pytest
import torch
from torch import nn

from lightning_dnas import PIT
from tests.support import assert_faithful


class Residual(nn.Module):
    def __init__(self, op: str) -> None:
        super().__init__()
        self.op = op
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.a = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8))
        self.b = nn.Conv2d(8, 8, 1)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        a, b = self.a(x), self.b(x)
        y = a + b if self.op == "add" else a - b if self.op == "sub" else a * b
        return self.head(torch.relu(y + x))


def test_residual_inputs_share_one_mask():
    search = PIT(Residual("add"), torch.randn(2, 3, 6, 6))
    assert set(search.channel_masks) == {"stem"}  # stem, a.0 and b share; head is output


def test_residual_patterns_export_exactly():
    for op in ("add", "sub", "mul"):
        assert_faithful(Residual(op), torch.randn(2, 3, 6, 6))


class CatAdd(nn.Module):
    """``cat([p, q]) + r`` (DPN, GhostNet bottlenecks): r's channels line up with p's and
    q's. With ``grouped``, r comes out of a grouped conv of 2 groups of 4 channels."""

    def __init__(self, grouped: bool = False) -> None:
        super().__init__()
        self.p, self.q = nn.Conv2d(3, 3, 1), nn.Conv2d(3, 5, 1)
        self.r = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.g = nn.Conv2d(8, 8, 3, padding=1, groups=2) if grouped else nn.Identity()
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        return self.head(torch.relu(torch.cat([self.p(x), self.q(x)], 1) + self.g(self.r(x))))


def test_concat_then_add_cuts_the_other_operand():
    """r's group is cut after its first 3 channels: r[:3] shares p's mask, r[3:] q's."""
    search = assert_faithful(CatAdd(), torch.randn(2, 3, 6, 6), mask_seeds=range(4))
    assert sorted(m.alpha.numel() for m in search.channel_masks.values()) == [3, 5]
    arch = search.arch()["modules"]
    p, q, r = (arch.get(n, {}).get("out") or list(range(w))
               for n, w in (("p", 3), ("q", 5), ("r.0", 8)))
    assert r == p + [3 + i for i in q]


def test_concat_then_add_inside_a_grouped_unit_freezes():
    """The cut at 3 would split a group of the grouped conv (units of 4): frozen."""
    with pytest.warns(UserWarning, match="operands with different channel groups"):
        search = assert_faithful(CatAdd(grouped=True), torch.randn(2, 3, 6, 6))
    assert sorted(m.alpha.numel() for m in search.channel_masks.values()) == []
