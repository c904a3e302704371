"""Memory format of the hard-mode fast path's unselected candidates (supernet/memory_format.py)."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from lightning_dnas.nas.supernet.memory_format import channels_last_helps, is_layout_free
from lightning_dnas.zoo.supernet_blocks import ConvBNAct, DepthwiseSeparable


class ViewBlock(nn.Module):
    """A custom forward: anything may happen in it (here a view that channels_last breaks)."""

    def forward(self, x: Tensor) -> Tensor:
        return x.view(x.shape[0], -1).view_as(x)


class MyConv(nn.Conv2d):
    """A Conv2d subclass: it could override forward, so it is not trusted."""


class Declared(nn.Module):
    layout_free = True

    def __init__(self) -> None:
        super().__init__()
        self.inner = ViewBlock()  # not inspected: the declaration covers the subtree

    def forward(self, x: Tensor) -> Tensor:
        return x


@pytest.mark.parametrize(
    ("module", "expected"),
    [
        (nn.Sequential(nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4), nn.ReLU()), True),
        (nn.Sequential(nn.Sequential(nn.Conv2d(4, 4, 1), nn.Hardswish()), nn.MaxPool2d(2)), True),
        (ConvBNAct(4, 4, 3, 1, bias=True, relu=True), True),
        (DepthwiseSeparable(4, 4, 1, bias=True, relu=True), True),
        (nn.Identity(), True),
        (Declared(), True),
        (nn.Sequential(nn.Conv2d(4, 4, 3), nn.Dropout(0.2)), False),  # draws in memory order
        (nn.Sequential(nn.Conv2d(4, 4, 3), ViewBlock()), False),
        (MyConv(4, 4, 3), False),
        (nn.Sequential(nn.Conv2d(4, 4, 3), nn.Flatten(), nn.Linear(4, 4)), False),
    ],
)
def test_is_layout_free(module: nn.Module, expected: bool) -> None:
    assert is_layout_free(module) is expected


def test_pit_masked_layers_declare_layout_free() -> None:
    from lightning_dnas.nas.pit.layers import MaskedBatchNorm, MaskedConv

    assert MaskedConv.layout_free and MaskedBatchNorm.layout_free


def test_channels_last_helps_a_default_format_4d_cpu_batch() -> None:
    assert channels_last_helps(torch.randn(2, 3, 5, 4))


@pytest.mark.parametrize(
    "x",
    [
        torch.randn(2, 3, 5, 4).contiguous(memory_format=torch.channels_last),  # already
        torch.randn(2, 1, 5, 4),  # C == 1: both formats are the same memory
        torch.randn(2, 3, 1, 1),  # H * W == 1: likewise
        torch.randn(2, 3, 5),  # not 4-D
        torch.randn(2, 3, 5, 4)[..., ::2],  # neither format: left as it is
        torch.randint(0, 5, (2, 3, 5, 4)),  # not floating point
    ],
)
def test_channels_last_does_not_help_other_tensors(x: Tensor) -> None:
    assert not channels_last_helps(x)
