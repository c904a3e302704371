"""Norms and PReLU after searched channels.

BatchNorm/InstanceNorm are per-channel companions (masked at search, sliced on export); a
per-channel PReLU is sliced on export. A GroupNorm (the module, a subclass, timm's
GroupNormAct through its ``F.group_norm``) is a companion searched in whole groups: its
export keeps the kept groups' statistics. A LayerNorm over more than the channel dim and a
bare ``F.group_norm`` mix the channels' statistics: their groups are frozen (SPEC section
3), with one warning. (A LayerNorm over exactly the channels: test_layer_norm.py.)
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


def test_layer_norm_over_more_dims_freezes_its_group():
    with pytest.warns(UserWarning, match="module LayerNorm over other dims.*channels of 0 are"):
        search = assert_faithful(block(nn.LayerNorm([8, 6, 6])), X)
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


class GroupNormAct(nn.GroupNorm):
    """A GroupNorm subclass outside torch.nn with an activation and an attribute of its own
    (timm's GroupNormAct pattern): traced through, its ``F.group_norm`` call on its own
    tensors and ``num_groups`` makes it a companion searched in whole groups."""

    def __init__(self, groups: int, channels: int, act: nn.Module, **kwargs) -> None:
        super().__init__(groups, channels, **kwargs)
        self.act = act
        self.tag = "kept on export"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps))


def group_norm_block(norm: nn.Module) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), norm, nn.ReLU(), nn.Conv2d(8, 6, 1),
                         nn.ReLU(), nn.Conv2d(6, 2, 1))  # fmt: skip


@pytest.mark.parametrize("make", [
    lambda: nn.GroupNorm(4, 8), lambda: nn.GroupNorm(2, 8, eps=1e-3, affine=False),
    lambda: GroupNormAct(4, 8, nn.SiLU()), lambda: GroupNormAct(2, 8, nn.Sigmoid(), eps=1e-3),
], ids=["module", "no_affine", "subclass_silu", "subclass_sigmoid"])  # fmt: skip
def test_group_norm_is_searched_in_whole_groups(make):
    """One mask entry per group of the norm (8 / G), for the module and a subclass traced
    through; random masks export exactly (assert_faithful)."""
    norm = make()
    search = assert_faithful(group_norm_block(norm), X)
    assert search.channel_masks["0"].alpha.numel() == norm.num_groups
    assert set(search.channel_masks) == {"0", "3"}


def test_group_norm_of_one_group_freezes():
    """One group normalises over every channel: its only unit would be the whole width, so
    it is frozen with a warning that names it (timm's GroupNorm1 alike)."""
    with pytest.warns(UserWarning, match="GroupNorm of one group.*channels of 0 are kept"):
        search = assert_faithful(group_norm_block(nn.GroupNorm(1, 8)), X)
    assert set(search.channel_masks) == {"3"}


def test_group_norm_subclass_as_a_leaf_is_searched():
    """A GroupNorm subclass made a leaf (opaque forward): searched in whole groups, its own
    forward run with the masked affine parameters; the next conv masks its input, since the
    forward may map zeros anywhere (here a sigmoid)."""
    model = group_norm_block(GroupNormAct(4, 8, nn.Sigmoid()))
    search = assert_faithful(model, X, leaf_modules=[GroupNormAct])
    assert search.channel_masks["0"].alpha.numel() == 4
    assert search.net[3]._inp is not None


def test_group_norm_export_keeps_whole_groups_by_hand():
    """GroupNorm(4, 8) (groups of 2 channels), masks 0.9, 0.1, 0.8 and the always-kept last
    one: groups 0, 2, 3 kept, channels [0, 1, 4, 5, 6, 7]. The exported norm is a copy (class,
    activation, eps, an own attribute, a forward hook) with 3 groups and the trained affine
    parameters of those channels; search, export and the plain recomputation
    ``act(group_norm(conv(x)[:, keep], 3, w[keep], b[keep]))`` agree."""
    norm = GroupNormAct(4, 8, nn.SiLU(), eps=1e-3)
    seen = []
    norm.register_forward_hook(lambda module, inputs, out: seen.append(out.shape[1]))
    model = group_norm_block(norm)
    search = assert_faithful(model, X, range(0))
    with torch.no_grad():
        search.channel_masks["0"].alpha.copy_(torch.tensor([0.9, 0.1, 0.8, 0.2]))
    keep = [0, 1, 4, 5, 6, 7]
    assert search.arch()["modules"]["1"]["keep"] == keep
    assert search.arch()["modules"]["0"]["out"] == keep
    exported = search.export()
    gn = exported[1]
    assert type(gn) is GroupNormAct and isinstance(gn.act, nn.SiLU) and gn.tag == "kept on export"
    assert (gn.num_groups, gn.num_channels, gn.eps) == (3, 6, 1e-3)
    assert torch.equal(gn.weight, model[1].weight[keep])
    assert torch.equal(gn.bias, model[1].bias[keep])
    search.eval(), exported.eval()
    with torch.no_grad():
        y = model[0](X)[:, keep]
        h = F.silu(F.group_norm(y, 3, model[1].weight[keep], model[1].bias[keep], 1e-3))
        h = F.relu(F.conv2d(F.relu(h), model[3].weight[:, keep], model[3].bias))
        expected = model[5](h)
        seen.clear()
        out, found = exported(X), search(X)
    assert seen == [6, 8]  # the hook was copied with the module: it ran on the export too
    assert torch.allclose(out, expected, atol=1e-6)
    assert torch.allclose(found, expected, atol=1e-6)


def test_group_norm_mask_gradients_equal_plain_recomputation():
    """Training mode: the conv's mask (one entry per group) is folded into the norm's
    affine parameters; output and mask gradients equal ``group_norm(conv(x)) * m`` with
    ``m`` the binarized mask repeated over each group's channels."""
    model = group_norm_block(nn.GroupNorm(4, 8))
    search = assert_faithful(model, X, range(0))
    randomize_masks(search, 5, 0.2, 1.0)
    ref = copy.deepcopy(model).train()
    search.train()
    a0, a3 = (search.channel_masks[k].alpha.detach().clone().requires_grad_() for k in "03")
    m0 = hard(a0).repeat_interleave(2).view(1, -1, 1, 1)
    h = F.relu(F.group_norm(ref[0](X), 4, ref[1].weight, ref[1].bias) * m0)
    h = F.relu(ref[3](h) * hard(a3).view(1, -1, 1, 1))
    expected = ref[5](h)
    out = search(X)
    assert torch.allclose(out, expected, atol=1e-6)
    out.square().sum().backward()
    expected.square().sum().backward()
    for key, alpha in (("0", a0), ("3", a3)):
        assert torch.allclose(search.channel_masks[key].alpha.grad, alpha.grad, atol=1e-5)


class CatNorm(nn.Module):
    """``GroupNorm(4, 8)`` over ``cat([conv_a(x), conv_b(x)])`` of ``split`` + ``8 - split``
    channels."""

    def __init__(self, split: int) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, split, 1), nn.Conv2d(3, 8 - split, 1)
        self.norm, self.head = nn.GroupNorm(4, 8), nn.Conv2d(8, 2, 1)

    def forward(self, x):
        return self.head(self.norm(torch.cat([self.a(x), self.b(x)], 1)))


def test_group_norm_group_across_channel_groups_freezes():
    """A norm group made of channels of two producers would mix two masks: frozen when it
    straddles them (3 + 5 channels, groups of 2), searched in whole groups when they line up
    (4 + 4)."""
    with pytest.warns(UserWarning, match="GroupNorm group across channel groups"):
        search = assert_faithful(CatNorm(3), X)
    assert list(search.channel_masks) == []
    search = assert_faithful(CatNorm(4), X)
    assert {k: m.alpha.numel() for k, m in search.channel_masks.items()} == {"a": 2, "b": 2}


def test_functional_group_norm_on_other_groups_freezes():
    """``F.group_norm`` inside a GroupNorm on other parameters or another group count than
    its module's would not match the sliced copy: frozen, with one warning."""

    class OtherGroups(nn.GroupNorm):
        def forward(self, x):
            return F.group_norm(x, 2, self.weight, self.bias, self.eps)

    class OtherWeight(nn.GroupNorm):
        def forward(self, x):
            return F.group_norm(x, self.num_groups, self.weight * 2, self.bias, self.eps)

    for norm in (OtherGroups(4, 8), OtherWeight(4, 8)):
        with pytest.warns(UserWarning, match="group_norm on other tensors or groups"):
            search = assert_faithful(group_norm_block(norm), X)
        assert set(search.channel_masks) == {"3"}


def test_export_group_norm_refuses_partial_groups():
    from lightning_dnas.nas.pit.export import export_group_norm

    norm = nn.GroupNorm(4, 8)
    assert export_group_norm(norm, [2, 3, 6, 7]).num_groups == 2
    for keep in ([0, 2], [1, 2], [0, 1, 2]):
        with pytest.raises(ValueError, match="keeps whole groups only"):
            export_group_norm(norm, keep)


def test_timm_group_norm_act_is_searched_and_exported():
    """timm's GroupNormAct (``num_channels`` first, activation and drop submodules):
    searched in whole groups, exported as a GroupNormAct with fewer groups, its activation
    and eps kept."""
    timm_layers = pytest.importorskip("timm.layers")
    make = lambda c: timm_layers.GroupNormAct(c, 2, eps=1e-3, act_layer=nn.Hardswish)  # noqa: E731
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), make(8), nn.Conv2d(8, 6, 1), make(6),
                          nn.Conv2d(6, 2, 1))  # fmt: skip
    search = assert_faithful(model, X)
    assert {k: m.alpha.numel() for k, m in search.channel_masks.items()} == {"0": 2, "2": 2}
    with torch.no_grad():
        search.channel_masks["0"].alpha.copy_(torch.tensor([0.1, 1.0]))
    exported = search.export()
    assert type(exported[1]) is timm_layers.GroupNormAct
    assert isinstance(exported[1].act, nn.Hardswish) and exported[1].eps == 1e-3
    assert (exported[1].num_groups, exported[1].num_channels) == (1, 4)


def test_timm_network_with_group_norm_act_is_searched():
    """timm's efficientnet_b0_gn (GroupNormAct everywhere, 8 channels per group at least):
    every conv but the classifier's input stays searchable and random masks export exactly."""
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model("efficientnet_b0_gn", pretrained=False, num_classes=3)
    x = torch.randn(2, 3, 32, 32)
    search = assert_faithful(model, x, range(1))
    norms = [m for m in model.modules() if type(m).__name__ == "GroupNormAct"]
    assert norms and len(search.channel_masks) == 40
