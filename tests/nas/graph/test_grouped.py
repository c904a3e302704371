"""Grouped convs (ResNeXt/RegNet style) are searched in whole groups."""

import torch
from torch import nn

from lightning_dnas import PIT
from tests.support import assert_faithful


class Bottleneck(nn.Module):
    """1x1 -> grouped 3x3 (4 groups of 4) -> 1x1, with a residual."""

    def __init__(self, bias: bool = False) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 1), nn.BatchNorm2d(8), nn.ReLU())
        self.a = nn.Sequential(nn.Conv2d(8, 16, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.b = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, groups=4, bias=bias),
                               nn.BatchNorm2d(16), nn.ReLU())  # fmt: skip
        self.c = nn.Sequential(nn.Conv2d(16, 8, 1, bias=False), nn.BatchNorm2d(8))
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        x = self.stem(x)
        return self.head(torch.relu(self.c(self.b(self.a(x))) + x))


def test_grouped_conv_shares_its_producer_mask_in_whole_groups():
    search = PIT(Bottleneck(), torch.randn(2, 3, 5, 5))
    assert set(search.channel_masks) == {"stem/0", "a/0"}
    assert search.channel_masks["a/0"].channels == 4  # one entry per group of 4 channels
    with torch.no_grad():
        search.channel_masks["a/0"].alpha.copy_(torch.tensor([0.9, 0.1, 0.2, 1.0]))
    exported = search.export()
    assert exported.a[0].out_channels == 8
    assert exported.b[0].groups == 2 and exported.b[0].in_channels == 8


def test_grouped_conv_exports_exactly():
    assert_faithful(Bottleneck(), torch.randn(2, 3, 5, 5), range(4))
    assert_faithful(Bottleneck(bias=True), torch.randn(2, 3, 5, 5), range(4))
