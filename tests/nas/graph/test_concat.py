"""Channel concat concatenates the inputs' masks (also cascaded)."""

import torch
from torch import nn

from lightning_dnas import PIT
from tests.support import assert_faithful


class Concat(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 1)
        self.b = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6))
        self.c = nn.Conv2d(3, 2, 1)
        self.head = nn.Conv2d(12, 3, 1)

    def forward(self, x):
        y = torch.cat([self.a(x), self.b(x)], dim=1)
        y = torch.cat((y, torch.sigmoid(self.c(x))), 1)  # sigmoid(0) != 0: re-masked
        return self.head(y)


def test_concat_keeps_one_mask_per_input():
    search = PIT(Concat(), torch.randn(2, 3, 4, 4))
    assert set(search.channel_masks) == {"a", "b/0", "c"}


def test_concat_exports_exactly():
    assert_faithful(Concat(), torch.randn(2, 3, 4, 4), range(5))
