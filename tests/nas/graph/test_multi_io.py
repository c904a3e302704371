"""Several inputs and outputs (tuples, namedtuples, dicts): each input's and output's
channels are fixed, everything between is searched, and nothing warns about them."""

import warnings
from collections import namedtuple

import torch
from torch import nn

from lightning_dnas import PIT
from tests.support import assert_faithful

Outputs = namedtuple("Outputs", "logits aux")
X = (torch.randn(2, 3, 5, 5), torch.randn(2, 4, 5, 5))


class TwoInTwoOut(nn.Module):
    def __init__(self, how: str) -> None:
        super().__init__()
        self.how = how
        self.a = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU())
        self.b = nn.Sequential(nn.Conv2d(4, 6, 1), nn.BatchNorm2d(6), nn.ReLU())
        self.mid = nn.Conv2d(6, 5, 1)
        self.out1, self.out2 = nn.Conv2d(5, 2, 1), nn.Conv2d(6, 3, 1)

    def forward(self, x, z):
        y = self.a(x) + self.b(z)
        m = torch.relu(self.mid(y))
        if self.how == "tuple":
            return self.out1(m), self.out2(y)
        if self.how == "dict":
            return {"logits": self.out1(m), "aux": self.out2(y)}
        if self.how == "namedtuple_use":  # a field read back inside the network
            inner = Outputs(self.mid(y), aux=y)
            return self.out1(torch.relu(inner.logits)), self.out2(inner[1])
        return Outputs(self.out1(m), aux=self.out2(y))


def test_multiple_inputs_and_outputs_are_searched_without_warnings():
    for how in ("tuple", "dict", "namedtuple", "namedtuple_use"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no freeze warning at all
            search = assert_faithful(TwoInTwoOut(how), X)
        assert set(search.channel_masks) == {"a/0", "mid"}, how


def test_an_output_reached_through_a_namedtuple_is_fixed():
    search = PIT(TwoInTwoOut("namedtuple"), X)
    with torch.no_grad():
        for p in search.nas_parameters():
            p.zero_()
    exported = search.export()
    out = exported(*X)
    assert out.logits.shape[1] == 2 and out.aux.shape[1] == 3
