"""A module called twice (shared weights): one mask, its inputs share channels; params
count it once, MACs every call."""

import torch
from torch import nn

from tests.support import assert_faithful, conv_linear_costs


class Twice(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 6, 3, padding=1)
        self.shared = nn.Sequential(nn.Conv2d(6, 6, 3, padding=1), nn.ReLU())
        self.other = nn.Conv2d(3, 6, 1)
        self.head = nn.Conv2d(6, 2, 1)

    def forward(self, x):
        a = self.shared(torch.relu(self.stem(x)))
        b = self.shared(self.other(x))  # second call: its input must share stem's channels
        return self.head(self.shared(a + b))  # third call, on the shared layer's own output


def test_shared_layer_merges_the_inputs_of_all_its_calls():
    x = torch.randn(2, 3, 5, 5)
    search = assert_faithful(Twice(), x, range(4))
    assert set(search.channel_masks) == {"stem"}  # stem, other and shared all tied
    params, macs = conv_linear_costs(Twice(), x)
    search = assert_faithful(Twice(), x, range(0))
    assert search.hard_cost("params") == params  # the hook counter counts modules once
    assert search.hard_cost("macs") == macs
