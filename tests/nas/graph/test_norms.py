"""Norms and PReLU after searched channels.

BatchNorm/InstanceNorm and a GroupNorm with one channel per group are per-channel
companions (masked at search, sliced on export); a per-channel PReLU is sliced on export.
A GroupNorm with several channels per group, a LayerNorm over more than the channel dim and
``F.group_norm`` mix the channels' statistics: their groups are frozen (SPEC section 3),
with one warning. (A LayerNorm over exactly the channels: test_layer_norm.py.)
"""

import pytest
import torch
from torch import nn

from tests.support import assert_faithful

X = torch.randn(2, 3, 6, 6)


def block(norm: nn.Module, act: nn.Module | None = None) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), norm, act or nn.ReLU(),
                         nn.Conv2d(8, 8, 1), nn.ReLU(), nn.Conv2d(8, 2, 1))  # fmt: skip


@pytest.mark.parametrize("norm", [
    nn.BatchNorm2d(8), nn.InstanceNorm2d(8, affine=True), nn.InstanceNorm2d(8),
    nn.InstanceNorm2d(8, affine=True, track_running_stats=True), nn.GroupNorm(8, 8),
    nn.GroupNorm(8, 8, affine=False),
], ids=["batch", "instance_affine", "instance", "instance_running", "group_per_channel",
        "group_per_channel_no_affine"])  # fmt: skip
def test_per_channel_norms_are_sliced_companions(norm):
    search = assert_faithful(block(norm), X)
    assert set(search.channel_masks) == {"0", "3"}


@pytest.mark.parametrize("num", [1, 8])
def test_prelu_is_kept_searchable(num):
    search = assert_faithful(block(nn.BatchNorm2d(8), nn.PReLU(num)), X)
    assert set(search.channel_masks) == {"0", "3"}
    if num == 8:
        keep = search.arch()["modules"]["2"]["keep"]
        assert keep == search.arch()["modules"]["0"]["out"]
        exported = search.export()
        trained = search.net.get_submodule("2").weight
        assert torch.equal(exported[2].weight, trained[keep])


@pytest.mark.parametrize("norm", [nn.GroupNorm(2, 8), nn.LayerNorm([8, 6, 6])],
                         ids=["group", "layer"])  # fmt: skip
def test_channel_mixing_norms_freeze_their_group(norm):
    with pytest.warns(UserWarning, match=f"module {type(norm).__name__}.*channels of 0 are kept"):
        search = assert_faithful(block(norm), X)
    assert set(search.channel_masks) == {"3"}


def test_functional_layer_and_group_norm_freeze():
    class Functional(nn.Module):
        def __init__(self, how: str) -> None:
            super().__init__()
            self.how = how
            self.a, self.b = nn.Conv2d(3, 8, 1), nn.Conv2d(8, 2, 1)

        def forward(self, x):
            y = self.a(x)
            if self.how == "layer_norm":
                y = nn.functional.layer_norm(y.permute(0, 2, 3, 1), (8,)).permute(0, 3, 1, 2)
            else:
                y = nn.functional.group_norm(y, 4)
            return self.b(y)

    for how in ("layer_norm", "group_norm"):
        with pytest.warns(UserWarning, match=f"{how}.*channels of a are kept whole"):
            search = assert_faithful(Functional(how), X)
        assert list(search.channel_masks) == []
