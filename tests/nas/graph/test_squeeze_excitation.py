"""Squeeze-and-excitation: x * gate(mean(x)) keeps x's group; the gate's inner width is
searched; sigmoid(0) != 0 on pruned gate inputs is never read by a mixer unmasked."""

import torch
from torch import nn
from torchvision.ops import SqueezeExcitation

from tests.support import assert_faithful

X = torch.randn(2, 3, 6, 6)


class SE(nn.Module):
    def __init__(self, gate: str) -> None:
        super().__init__()
        self.gate = gate
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.SiLU())
        self.fc1, self.fc2 = nn.Conv2d(8, 4, 1), nn.Conv2d(4, 8, 1)
        self.tv = SqueezeExcitation(8, 4)
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        x = self.stem(x)
        if self.gate == "torchvision":
            return self.head(self.tv(x))
        s = x.mean((2, 3), keepdim=True)
        g = self.fc2(torch.relu(self.fc1(s)))
        g = torch.sigmoid(g) if self.gate == "sigmoid" else nn.functional.hardsigmoid(g)
        return self.head(x * g)


def test_se_gate_shares_the_gated_group():
    for gate in ("sigmoid", "hardsigmoid"):
        search = assert_faithful(SE(gate), X, range(4))
        assert set(search.channel_masks) == {"stem/0", "fc1"}  # fc2 writes stem's group


def test_torchvision_squeeze_excitation():
    search = assert_faithful(SE("torchvision"), X, range(4))
    assert set(search.channel_masks) == {"stem/0", "tv/fc1"}
