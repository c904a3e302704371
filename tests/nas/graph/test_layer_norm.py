"""LayerNorm over exactly the channel dim (channels last): searched, computed over the kept
channels only in the search network, sliced on export (normalized_shape, weight, bias).

Module ``nn.LayerNorm`` and ``F.layer_norm`` inside an ``nn.LayerNorm`` subclass on its own
parameters (torchvision's LayerNorm2d: permute, layer_norm, permute) are searched; a
LayerNorm over more dims, or ``F.layer_norm`` on other parameters, freezes (test_norms.py).
"""

import pytest
import torch
from torch import nn

from lightning_dnas import PIT
from lightning_dnas.nas.pit.layer_norm import kept_layer_norm
from tests.support import assert_faithful, randomize_masks

X = torch.randn(2, 3, 5, 5)


class LayerNorm2d(nn.LayerNorm):
    """torchvision.models.convnext.LayerNorm2d: a LayerNorm over dim 1 of NCHW data."""

    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        x = nn.functional.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class Tokens(nn.Module):
    """Linear -> LayerNorm -> Linear on [N, L, C] tokens, with a residual stream."""

    def __init__(self, **norm) -> None:
        super().__init__()
        self.embed = nn.Linear(4, 8)
        self.norm = nn.LayerNorm(8, **norm)
        self.fc = nn.Linear(8, 8)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        h = self.embed(x)
        return self.head(h + self.fc(self.norm(h)))


class Stem(nn.Module):
    """conv -> LayerNorm2d -> conv (ConvNeXt's stem and downsampling layers)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 2, stride=2)
        self.norm = LayerNorm2d(8, eps=1e-6)
        self.down = nn.Conv2d(8, 6, 2, stride=2)
        self.head = nn.Conv2d(6, 2, 1)

    def forward(self, x):
        return self.head(self.down(self.norm(self.conv(x))))


@pytest.mark.parametrize("norm", [{}, {"elementwise_affine": False}, {"bias": False}],
                         ids=["affine", "no_affine", "no_bias"])  # fmt: skip
def test_module_layer_norm_is_searched(norm):
    search = assert_faithful(Tokens(**norm), torch.randn(2, 5, 4), range(4))
    assert set(search.channel_masks) == {"embed"}  # fc shares the residual; head: output
    randomize_masks(search, 1)
    keep = search.arch()["modules"]["norm"]["keep"]
    assert keep == search.arch()["modules"]["embed"]["out"]
    norm_out = search.export().norm
    assert norm_out.normalized_shape == (len(keep),)
    if norm_out.weight is not None:
        assert torch.equal(norm_out.weight, search.net.norm.layer.weight[keep])


def test_layer_norm_2d_subclass_is_searched():
    search = assert_faithful(Stem(), X, range(4))
    assert set(search.channel_masks) == {"conv", "down"}
    exported = search.export()
    assert type(exported.norm) is LayerNorm2d
    assert exported.norm.weight.shape[0] == exported.conv.out_channels


def test_masked_layer_norm_equals_the_sliced_one_and_all_on_the_plain_one():
    x = torch.randn(3, 4, 7)
    w, b = torch.randn(7), torch.randn(7)
    m = torch.tensor([1.0, 0, 1, 1, 0, 0, 1])
    kept = m.bool()
    out = kept_layer_norm(x, m, w, b, 1e-5)
    ref = nn.functional.layer_norm(x[..., kept], (4,), w[kept], b[kept], 1e-5)
    torch.testing.assert_close(out[..., kept], ref)
    assert torch.equal(out[..., ~kept], torch.zeros_like(out[..., ~kept]))
    ones = kept_layer_norm(x, torch.ones(7), w, b, 1e-5)
    torch.testing.assert_close(ones, nn.functional.layer_norm(x, (7,), w, b, 1e-5))


def test_mask_gradients_are_those_of_the_masked_formula():
    x, w, b, r = torch.randn(3, 4, 6), torch.randn(6), torch.randn(6), torch.randn(3, 4, 6)
    m = torch.tensor([1.0, 0, 1, 1, 0, 1], requires_grad=True)
    (kept_layer_norm(x, m, w, b, 1e-5) * r).sum().backward()
    fast = m.grad.clone()
    m.grad = None
    mean = (m * x).sum(-1, keepdim=True) / m.sum()
    var = (m * (x - mean) ** 2).sum(-1, keepdim=True) / m.sum()
    ((((x - mean) / torch.sqrt(var + 1e-5) * w + b) * m) * r).sum().backward()
    torch.testing.assert_close(fast, m.grad)
    assert fast[1] != 0  # a pruned channel gets a gradient too (STE)
    search = PIT(Tokens(), torch.randn(2, 5, 4))
    assert not search.net.norm._mask.detach  # the search network's norm passes them on


def test_layer_norm_over_a_non_last_dim_freezes():
    class First(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.norm, self.b = nn.Conv2d(3, 5, 1), nn.LayerNorm(5), nn.Conv2d(5, 2, 1)

        def forward(self, x):  # channels on dim 1, LayerNorm over the last (spatial) dim
            return self.b(self.norm(self.a(x)))

    with pytest.warns(UserWarning, match=r"module LayerNorm over other dims.*of a are kept"):
        search = assert_faithful(First(), X)
    assert list(search.channel_masks) == []


def test_shared_layer_norm_ties_its_inputs():
    class Shared(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(4, 6), nn.Linear(4, 6)
            self.norm, self.head = nn.LayerNorm(6), nn.Linear(6, 2)

        def forward(self, x):
            return self.head(self.norm(self.a(x)) * self.norm(self.b(x)))

    search = assert_faithful(Shared(), torch.randn(3, 4), range(4))
    assert list(search.channel_masks) == ["a"]  # one mask: the norm's weight is sliced once


def test_functional_layer_norm_on_foreign_parameters_freezes():
    class Foreign(LayerNorm2d):
        def __init__(self) -> None:
            super().__init__(8)
            self.scale = nn.Parameter(torch.ones(8))

        def forward(self, x):
            x = x.permute(0, 2, 3, 1)
            x = nn.functional.layer_norm(x, self.normalized_shape, self.scale, self.bias)
            return x.permute(0, 3, 1, 2)

    model = Stem()
    model.norm = Foreign()
    with pytest.warns(UserWarning, match="layer_norm on other parameters.*of conv are kept"):
        search = assert_faithful(model, X)
    assert list(search.channel_masks) == ["down"]


class HeadsOut(nn.Module):
    """MaxViT's attention: the norm's channel count D sizes the reshape of another (frozen)
    tensor, ``out.reshape(B, L, D)``: pruning the norm's channels would break it."""

    def __init__(self, same: bool) -> None:
        super().__init__()
        self.same = same
        self.embed, self.norm = nn.Linear(4, 6), nn.LayerNorm(6)
        self.qkv, self.head, self.out = nn.Linear(6, 6), nn.Linear(6, 2), nn.Linear(6, 2)

    def forward(self, x):
        h = self.norm(self.embed(x))
        b, length, d = h.shape
        o = torch.special.expit(self.qkv(h))  # unknown to the analysis: qkv frozen
        if self.same:
            return self.head(h.reshape(b, length, d)) + self.out(o)
        return self.head(h) + self.out(o.reshape(b, length, d))


def test_channel_count_sizing_other_channels_freezes():
    with pytest.warns(UserWarning, match=r"channel count used outside a reshape.*embed"):
        search = assert_faithful(HeadsOut(same=False), torch.randn(2, 5, 4))
    assert list(search.channel_masks) == []
    same = assert_faithful(HeadsOut(same=True), torch.randn(2, 5, 4))
    assert list(same.channel_masks) == ["embed"]
