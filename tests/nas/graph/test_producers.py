"""Conv and Linear layers start a group for their output channels; a grouped conv that
changes the width, or a Linear over a non-channel dim, keeps channels whole."""

import pytest
import torch
from torch import nn

from lightning_dnas import PIT
from tests.support import assert_faithful


def test_conv_and_linear_each_start_a_group():
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3), nn.BatchNorm2d(6), nn.ReLU(), nn.Flatten(),
        nn.Linear(6 * 4 * 4, 10), nn.ReLU(), nn.Linear(10, 2),
    )  # fmt: skip
    search = assert_faithful(model, torch.randn(2, 3, 6, 6))
    assert set(search.channel_masks) == {"0", "4"}


def test_grouped_conv_changing_the_width_freezes():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.Conv2d(4, 8, 3, groups=2))
    with pytest.warns(UserWarning, match=r"grouped conv, groups=2"):
        search = PIT(model, torch.randn(2, 3, 5, 5))
    assert set(search.channel_masks) == set()


def test_linear_over_a_non_channel_dim_freezes():
    model = nn.Sequential(nn.Conv1d(3, 4, 1), nn.ReLU(), nn.Linear(5, 5), nn.Conv1d(4, 2, 1))
    with pytest.warns(UserWarning, match="linear over a non-channel dim"):
        search = PIT(model, torch.randn(2, 3, 5))
    assert "0" not in search.channel_masks
