"""Residual add/sub/mul: all inputs share one channel mask."""

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
