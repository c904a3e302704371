"""Masks touching the graph input or output are frozen."""

import torch
from torch import nn

from lightning_dnas import PIT


def test_input_and_output_channels_are_fixed():
    model = nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU(), nn.Conv2d(8, 4, 1))
    x = torch.randn(2, 3, 4, 4)
    search = PIT(model, x)
    assert set(search.channel_masks) == {"0"}
    with torch.no_grad():
        for p in search.nas_parameters():
            p.zero_()
    exported = search.export()
    assert exported[0].in_channels == 3 and exported[2].out_channels == 4
    assert exported[0].out_channels == 1  # the last channel of a group always survives


def test_residual_to_the_input_freezes_the_group():
    class Skip(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1)

        def forward(self, x):
            return self.conv(x) + x

    search = PIT(Skip(), torch.randn(2, 3, 4, 4))
    assert list(search.nas_parameters()) == []
