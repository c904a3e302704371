"""Elementwise activations (modules and functions) keep the group; those with f(0) != 0 get
the following mixer an input mask, so pruned channels still read as zero."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.support import assert_faithful

MODULES = [nn.ReLU(), nn.ReLU6(), nn.Hardswish(), nn.SiLU(), nn.GELU(), nn.Mish(), nn.ELU(),
           nn.LeakyReLU(0.1), nn.Tanh(), nn.Sigmoid(), nn.Hardsigmoid(), nn.Softplus()]  # fmt: skip
NON_ZERO_AT_ZERO = (nn.Sigmoid, nn.Hardsigmoid, nn.Softplus)


@pytest.mark.parametrize("act", MODULES, ids=lambda m: type(m).__name__)
def test_activation_module_keeps_the_group(act):
    model = nn.Sequential(nn.Conv2d(3, 6, 3), nn.BatchNorm2d(6), act, nn.Conv2d(6, 2, 1))
    search = assert_faithful(model, torch.randn(2, 3, 5, 5))
    assert set(search.channel_masks) == {"0"}
    masked_input = type(search.net[3]).__name__ == "MaskedConv"
    assert masked_input == isinstance(act, NON_ZERO_AT_ZERO)


class Functional(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 6, 3), nn.Conv2d(6, 2, 1)

    def forward(self, x):
        y = F.hardswish(F.silu(F.gelu(self.a(x))))
        y = F.relu6(torch.tanh(y).neg_().abs())
        return self.b(torch.exp(y) + F.softplus(y))


def test_functional_and_method_forms():
    search = assert_faithful(Functional(), torch.randn(2, 3, 5, 5))
    assert set(search.channel_masks) == {"a"}
