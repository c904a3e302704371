"""Channel shuffle (ShuffleNetV2: view-transpose-view) interleaves groups: frozen, exact."""

import pytest
import torch
from torch import nn
from torchvision.models.shufflenetv2 import InvertedResidual

from tests.support import assert_faithful


class Shuffle(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(3, 8, 1), nn.BatchNorm2d(8), nn.ReLU())
        self.b = nn.Conv2d(8, 8, 1)
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        y = self.a(x)
        n, c, h, w = y.shape
        y = y.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous().view(n, c, h, w)
        return self.head(torch.relu(self.b(y)))


def test_channel_shuffle_freezes_the_shuffled_group():
    with pytest.warns(UserWarning, match="`view` .*splits or moves the channel dim.*of a.0 are"):
        search = assert_faithful(Shuffle(), torch.randn(2, 3, 4, 4))
    assert set(search.channel_masks) == {"b"}


def test_shufflenet_v2_unit_converts_and_exports_exactly():
    model = nn.Sequential(nn.Conv2d(3, 8, 1), InvertedResidual(8, 8, 1), InvertedResidual(8, 16, 2),
                          nn.Conv2d(16, 2, 1))  # fmt: skip
    with pytest.warns(UserWarning, match="splits or moves the channel dim"):
        search = assert_faithful(model, torch.randn(2, 3, 8, 8))
    assert search.channel_masks  # the branches' inner widths are still searched
