"""An ``nn.Linear`` subclass whose forward is exactly ``F.linear(input, self.weight,
self.bias)`` (timm's ``Linear`` classifier) is a Linear layer: kept as one call, searched
and exported as ``nn.Linear``. A subclass computing anything else is traced through, and
its ``F.linear`` keeps the channels reaching it whole."""

import pytest
import torch
from torch import nn

from lightning_dnas import PIT
from tests.support import assert_faithful

X = torch.randn(2, 3, 4, 4)


class PlainLinear(nn.Linear):
    def forward(self, input):
        if torch.jit.is_scripting():  # timm's TorchScript branch: never taken by fx
            return nn.functional.linear(input, self.weight.to(input.dtype), self.bias)
        return nn.functional.linear(input, self.weight, self.bias)


class ScaledLinear(nn.Linear):
    def forward(self, input):
        return nn.functional.linear(input, self.weight * 2.0, self.bias)


class Net(nn.Module):
    def __init__(self, head: type[nn.Linear]) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(3, 6, 1), nn.BatchNorm2d(6), nn.ReLU())
        self.hidden = head(6, 5)
        self.out = nn.Linear(5, 2)

    def forward(self, x):
        return self.out(torch.relu(self.hidden(self.conv(x).mean((2, 3)))))


def test_a_plain_linear_subclass_is_a_searched_layer():
    search = assert_faithful(Net(PlainLinear), X, range(3))
    assert set(search.channel_masks) == {"conv/0", "hidden"}
    exported = search.export()
    assert type(exported.hidden) is nn.Linear
    assert exported.hidden.in_features == exported.conv[0].out_channels


def test_a_subclass_computing_something_else_is_traced_through():
    # (hard_cost does not count a traced-through layer: only the freeze is checked here)
    with pytest.warns(UserWarning, match="linear"):
        search = PIT(Net(ScaledLinear), X)
    assert set(search.channel_masks) == set()
