"""Depthwise conv shares its producer's mask; a biased depthwise conv is re-masked."""

import torch
from torch import nn

from lightning_dnas import PIT
from tests.support import assert_faithful


def net(bias: bool, bn: bool) -> nn.Module:
    dw = [nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=bias)] + ([nn.BatchNorm2d(8)] if bn else [])
    return nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU(), *dw, nn.ReLU(), nn.Conv2d(8, 5, 1))


def test_depthwise_shares_the_producer_mask():
    search = PIT(net(True, True), torch.randn(2, 3, 5, 5))
    assert set(search.channel_masks) == {"0"}


def test_depthwise_variants_export_exactly():
    for bias in (False, True):
        for bn in (False, True):
            assert_faithful(net(bias, bn), torch.randn(2, 3, 5, 5))
