"""Norms and PReLU after searched channels.

BatchNorm/InstanceNorm and a GroupNorm with one channel per group are per-channel
companions (masked at search, sliced on export); a per-channel PReLU is sliced on export.
A GroupNorm with several channels per group, a LayerNorm over more than the channel dim and
``F.group_norm`` mix the channels' statistics: their groups are frozen (SPEC section 3),
with one warning. (A LayerNorm over exactly the channels: test_layer_norm.py.)
"""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.support import assert_faithful, randomize_masks

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


class NormAct(nn.BatchNorm2d):
    """A BatchNorm subclass outside torch.nn with an activation (timm's BatchNormAct2d
    pattern): traced through, its ``F.batch_norm`` call makes it a companion."""

    def __init__(self, channels: int, act: nn.Module) -> None:
        super().__init__(channels)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # BatchNorm2d.forward branches on x.dim(): fx cannot trace it, timm copies it out.
        torch._assert(x.ndim == 4, "4D input")  # reads the shape only: folding still applies
        y = F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                         self.training, self.momentum, self.eps)  # fmt: skip
        return self.act(y)


def norm_act_block(act: type[nn.Module]) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), NormAct(8, act()),
                         nn.Conv2d(8, 6, 1), NormAct(6, act()), nn.Conv2d(6, 2, 1))  # fmt: skip


def hard(alpha: torch.Tensor) -> torch.Tensor:
    """The binarized mask with its straight-through gradient (the last channel kept)."""
    theta = torch.cat([alpha[:-1].abs(), torch.ones(1)])
    return (theta > 0.5).float() + theta - theta.detach()


@pytest.mark.parametrize("act", [nn.SiLU, nn.Sigmoid], ids=["silu", "sigmoid"])
@pytest.mark.parametrize("leaf", [False, True], ids=["traced", "leaf"])
def test_norm_subclass_with_activation_is_a_folded_companion(act, leaf):
    """Traced through or a leaf, the subclass is searched; the conv's mask is folded into
    its affine parameters (the conv itself is untouched) and its activation runs. Output and
    mask gradients equal the plain recomputation ``act(bn(conv(x)) * m)``, and the running
    statistics are updated as the seed's; after a sigmoid (f(0) != 0) or a leaf the next conv
    masks its input."""
    model = norm_act_block(act)
    options = {"leaf_modules": [NormAct]} if leaf else {}
    search = assert_faithful(model, X, **options)
    assert set(search.channel_masks) == {"0", "2"}
    assert type(search.net[0]) is nn.Conv2d  # its mask point is the norm
    conv2 = search.net[2]
    # Traced through, the activation is a node of its own: after a SiLU pruned channels are
    # zero; a leaf's forward is opaque: the next conv masks its input whatever it computes.
    masked_input = act is nn.Sigmoid or leaf
    assert type(conv2) is nn.Conv2d if not masked_input else conv2._out is None and conv2._inp
    randomize_masks(search, 3, 0.2, 1.0)
    ref = copy.deepcopy(model).train()
    search.train()
    a0, a2 = (search.channel_masks[k].alpha.detach().clone().requires_grad_() for k in "02")
    h = ref[1].act(F.batch_norm(ref[0](X), ref[1].running_mean, ref[1].running_var,
                                ref[1].weight, ref[1].bias, True) * hard(a0).view(1, -1, 1, 1))
    if masked_input:  # sigmoid(0) = 1/2: the pruned channels are cut (mask detached)
        h = h * hard(a0).detach().view(1, -1, 1, 1)
    h = ref[3].act(F.batch_norm(ref[2](h), ref[3].running_mean, ref[3].running_var,
                                ref[3].weight, ref[3].bias, True) * hard(a2).view(1, -1, 1, 1))
    if masked_input:
        h = h * hard(a2).detach().view(1, -1, 1, 1)
    expected = ref[4](h)
    out = search(X)
    assert torch.allclose(out, expected, atol=1e-6)
    out.square().sum().backward()
    expected.square().sum().backward()
    for key, alpha in (("0", a0), ("2", a2)):
        assert torch.allclose(search.channel_masks[key].alpha.grad, alpha.grad, atol=1e-5)
    assert torch.equal(search.net[1].layer.running_mean, ref[1].running_mean)
    assert torch.equal(search.net[1].layer.num_batches_tracked, ref[1].num_batches_tracked)
    exported = search.export()
    assert isinstance(exported[1], NormAct) and isinstance(exported[1].act, act)


def test_functional_batch_norm_on_other_tensors_freezes():
    """``F.batch_norm`` outside a BatchNorm module, or inside one on other tensors than its
    own, would not match the sliced module: frozen, with one warning."""

    class Borrowing(nn.BatchNorm2d):
        def forward(self, x):
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight * 2)

    class Bare(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Conv2d(3, 8, 1), nn.Conv2d(8, 2, 1)

        def forward(self, x):
            return self.b(F.batch_norm(self.a(x), None, None, training=True))

    borrowing = nn.Sequential(nn.Conv2d(3, 8, 1), Borrowing(8), nn.Conv2d(8, 2, 1))
    for model, why in ((borrowing, "on other tensors than its module's"),
                       (Bare(), "outside a BatchNorm module")):  # fmt: skip
        with pytest.warns(UserWarning, match=f"batch_norm {why}"):
            search = assert_faithful(model, X)
        assert list(search.channel_masks) == []


def test_timm_batch_norm_act_is_searched_and_exported():
    """timm's BatchNormAct2d (activation and drop submodules): searched, exported exactly
    as a BatchNormAct2d keeping its activation."""
    timm_layers = pytest.importorskip("timm.layers")
    make = lambda c: timm_layers.BatchNormAct2d(c, act_layer=nn.Hardswish, eps=1e-3)  # noqa: E731
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), make(8), nn.Conv2d(8, 6, 1), make(6),
                          nn.Conv2d(6, 2, 1))  # fmt: skip
    search = assert_faithful(model, X)
    assert set(search.channel_masks) == {"0", "2"}
    exported = search.export()
    assert type(exported[1]) is timm_layers.BatchNormAct2d
    assert isinstance(exported[1].act, nn.Hardswish) and exported[1].eps == 1e-3
    assert exported[1].num_features == len(search.arch()["modules"]["1"]["keep"])
