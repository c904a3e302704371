"""Residual mul by a scalar or a broadcast tensor keeps the group; a per-channel parameter
read directly (layer scale) is sliced on export (more in test_layer_scale.py); a ViT class
token concatenated along the tokens would keep its full width: those channels are frozen,
never exported wrong."""

import pytest
import torch
from torch import nn

from tests.support import assert_faithful

X = torch.randn(2, 3, 5, 5)


class Scale(nn.Module):
    def __init__(self, how: str) -> None:
        super().__init__()
        self.how = how
        self.stem = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6))
        self.branch = nn.Conv2d(6, 6, 3, padding=1)
        self.gamma = nn.Parameter(torch.rand(6, 1, 1) + 0.5)  # layer scale (ConvNeXt)
        self.scalar = nn.Parameter(torch.tensor(0.7))
        self.head = nn.Conv2d(6, 2, 1)

    def forward(self, x):
        x = self.stem(x)
        y = self.branch(x)
        if self.how == "scalar":
            y = x + 0.5 * y * 2.0
        elif self.how == "scalar_param":
            y = x + self.scalar * y
        elif self.how == "spatial_broadcast":
            y = x * torch.sigmoid(y.mean(1, keepdim=True))  # [N,1,H,W] gate
        else:
            y = x + self.gamma * y
        return self.head(y / 3.0)


@pytest.mark.parametrize("how", ["scalar", "scalar_param"])
def test_scalar_mul_keeps_the_residual_group(how):
    search = assert_faithful(Scale(how), X)
    assert set(search.channel_masks) == {"stem/0"}


def test_spatial_broadcast_gate_freezes_only_what_it_reduces():
    with pytest.warns(UserWarning, match="reduction over the channel dim.*of branch are"):
        search = assert_faithful(Scale("spatial_broadcast"), X, range(4))
    # mean over the branch's channels reads them whole; the gated stream stays searched
    # (the [N,1,H,W] gate broadcasts one value over all of x's channels).
    assert list(search.channel_masks) == ["stem/0"]


def test_layer_scale_parameter_is_sliced():
    search = assert_faithful(Scale("layer_scale"), X)
    assert list(search.channel_masks) == ["stem/0"]
    assert search.arch()["parameters"]["gamma"]["keep"] == search.arch()["modules"]["branch"]["out"]


class Tokens(nn.Module):
    """ViT-style: class token cat on the token dim, position embedding added."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, 8, 5)  # one patch: [N, 8, 1, 1]
        self.cls = nn.Parameter(torch.randn(1, 1, 8))
        self.pos = nn.Parameter(torch.randn(1, 2, 8))
        self.mlp = nn.Sequential(nn.Linear(8, 12), nn.GELU(), nn.Linear(12, 8))
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        t = self.proj(x).flatten(2).transpose(1, 2)  # [N, 1, 8]
        t = torch.cat([self.cls.expand(t.shape[0], -1, -1), t], dim=1) + self.pos
        t = t + self.mlp(t)
        return self.head(t[:, 0])


def test_class_token_and_position_embedding_freeze_the_token_width():
    with pytest.warns(UserWarning, match=r"`cat` \(cat with an unsearched operand.*proj"):
        search = assert_faithful(Tokens(), X)
    assert set(search.channel_masks) == {"mlp/0"}  # the MLP's hidden width stays searched
