"""squeeze/unsqueeze (with and without dim) move the channel dim but keep its groups."""

import torch
from torch import nn

from tests.support import assert_faithful


class Squeeze(nn.Module):
    def __init__(self, how: str) -> None:
        super().__init__()
        self.how = how
        self.conv = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Hardswish())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 3)
        self.conv1d = nn.Conv1d(8, 3, 1)

    def forward(self, x):
        y = self.pool(self.conv(x))  # [N, 8, 1, 1]
        if self.how == "squeeze":
            return self.fc(torch.squeeze(y))  # no dim: PLiNIO fails on this
        if self.how == "squeeze_dims":
            return self.fc(y.squeeze(-1).squeeze(-1))
        return self.conv1d(y.squeeze(3).squeeze(2).unsqueeze(-1))


def test_squeeze_and_unsqueeze_keep_the_group():
    for how in ("squeeze", "squeeze_dims", "unsqueeze"):
        search = assert_faithful(Squeeze(how), torch.randn(2, 3, 5, 5))
        assert set(search.channel_masks) == {"conv/0"}
