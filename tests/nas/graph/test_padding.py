"""Padding of spatial dims keeps the channels; a non-zero constant pad is re-masked."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.support import assert_faithful


class Pad(nn.Module):
    def __init__(self, how: str) -> None:
        super().__init__()
        self.how = how
        self.a = nn.Sequential(nn.Conv2d(3, 6, 3), nn.BatchNorm2d(6), nn.ReLU())
        self.pad = {"zero": nn.ZeroPad2d((1, 0, 2, 1)), "constant": nn.ConstantPad2d(1, 0.5),
                    "reflect": nn.ReflectionPad2d(1), "replicate": nn.ReplicationPad2d(1),
                    "functional": nn.Identity()}[how]  # fmt: skip
        self.b = nn.Conv2d(6, 2, 3)

    def forward(self, x):
        y = self.pad(self.a(x))
        if self.how == "functional":
            y = F.pad(y, (1, 1, 0, 2), value=-1.0)
        return self.b(y)


@pytest.mark.parametrize("how", ["zero", "constant", "reflect", "replicate", "functional"])
def test_spatial_padding_keeps_the_group(how):
    search = assert_faithful(Pad(how), torch.randn(2, 3, 6, 6))
    assert set(search.channel_masks) == {"a/0"}
    remasked = how in ("constant", "functional")  # pad value != 0 on pruned channels
    assert (search.net.b.__class__.__name__ == "MaskedConv") == remasked


def test_padding_the_channel_dim_freezes():
    class ChannelPad(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Conv2d(3, 6, 1), nn.Conv2d(8, 2, 1)

        def forward(self, x):
            return self.b(F.pad(self.a(x), (0, 0, 0, 0, 1, 1)))

    with pytest.warns(UserWarning, match="padding of the channel dim"):
        search = assert_faithful(ChannelPad(), torch.randn(2, 3, 4, 4))
    assert list(search.channel_masks) == []
