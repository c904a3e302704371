"""Per-channel parameters read directly by the forward (ConvNeXt's layer scale
``gamma[C, 1, 1] * y``, a learnable bias ``y + beta``) on searched channels: sliced on export
(the user's module keeps its class, with the tensor replaced by its kept channels).

A mul keeps pruned channels zero; an add maps them to ``beta``, so the next channel-mixing
layer gets a detached input mask (the re-mask rule of ops mapping 0 to non-zero). A tensor
also read by anything else keeps its channels whole. Also: a ConvNeXt block and
torchvision's convnext_tiny searched end to end.
"""

import warnings

import pytest
import torch
import torchvision
from torch import nn

from lightning_dnas import PIT
from tests.support import assert_export_matches, assert_faithful, randomize_masks

X = torch.randn(2, 3, 5, 5)


class Scaled(nn.Module):
    """stem -> branch conv, scaled or shifted per channel, residual add -> head."""

    def __init__(self, how: str) -> None:
        super().__init__()
        self.how = how
        self.stem = nn.Conv2d(3, 6, 3, padding=1)
        self.branch = nn.Conv2d(6, 6, 3, padding=1)
        self.gamma = nn.Parameter(torch.rand(6, 1, 1) + 0.5)
        self.register_buffer("beta", torch.rand(1, 6, 1, 1) + 0.5)
        self.head = nn.Conv2d(6, 2, 1)

    def forward(self, x):
        x = self.stem(x)
        y = self.branch(x)
        if self.how == "scale":
            y = self.gamma * y
        elif self.how == "bias":
            y = y + self.gamma  # maps pruned zeros to gamma: re-masked before the head
        elif self.how == "buffer":
            y = y / self.beta
        elif self.how == "twice":
            y = self.gamma * y - self.gamma
        elif self.how == "elsewhere":
            y = self.gamma * y + self.gamma.sum()
        return self.head(x + y)


@pytest.mark.parametrize("how", ["scale", "bias", "buffer", "twice"])
def test_per_channel_tensor_is_sliced(how):
    search = assert_faithful(Scaled(how), X, range(4))
    assert list(search.channel_masks) == ["stem"]
    spec = search.arch()
    name = "beta" if how == "buffer" else "gamma"
    assert list(spec["parameters"]) == [name]
    entry = spec["parameters"][name]
    assert entry["keep"] == spec["modules"]["stem"]["out"]
    exported = search.export()
    trained = getattr(search.net, name)
    sliced = getattr(exported, name)
    assert torch.equal(sliced, trained.index_select(entry["dim"], torch.tensor(entry["keep"])))
    assert isinstance(sliced, nn.Parameter) == (how != "buffer")
    assert (getattr(search.net.head, "_inp", None) is not None) == (how in ("bias", "twice"))


class Reshaped(nn.Module):
    """timm ConvNeXt's ``x.mul(self.gamma.reshape(1, -1, 1, 1))`` on a 1-D gamma; with
    ``fixed``, the reshape spells the width out (``reshape(1, 6, 1, 1)``), which would no
    longer fit a sliced gamma."""

    def __init__(self, fixed: bool) -> None:
        super().__init__()
        self.fixed = fixed
        self.stem, self.head = nn.Conv2d(3, 6, 3, padding=1), nn.Conv2d(6, 2, 1)
        self.gamma = nn.Parameter(torch.rand(6) + 0.5)

    def forward(self, x):
        x = self.stem(x)
        return self.head(x.mul(self.gamma.reshape(1, 6 if self.fixed else -1, 1, 1)) + x)


def test_a_1d_parameter_reshaped_with_minus_one_is_sliced():
    search = assert_faithful(Reshaped(fixed=False), X, range(3))
    spec = search.arch()
    assert spec["parameters"]["gamma"]["keep"] == spec["modules"]["stem"]["out"]
    assert search.export().gamma.shape == (len(spec["modules"]["stem"]["out"]),)


def test_a_parameter_reshaped_to_a_fixed_width_freezes():
    with pytest.warns(UserWarning, match="per-channel constant operand"):
        search = assert_faithful(Reshaped(fixed=True), X)
    assert list(search.channel_masks) == []


def test_tensor_also_used_elsewhere_freezes():
    with pytest.warns(UserWarning, match=r"`gamma` \(parameter also used elsewhere\).*branch"):
        search = assert_faithful(Scaled("elsewhere"), X)
    assert list(search.channel_masks) == []
    assert "parameters" not in search.arch()


class ConvNeXtBlock(nn.Module):
    """dw 7x7 -> permute -> LayerNorm -> Linear -> GELU -> Linear -> layer scale -> permute
    -> residual add (torchvision's CNBlock, written out)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.dw = nn.Conv2d(c, c, 7, padding=3, groups=c)
        self.norm = nn.LayerNorm(c, eps=1e-6)
        self.up, self.down = nn.Linear(c, 4 * c), nn.Linear(4 * c, c)
        self.gamma = nn.Parameter(torch.rand(c) + 0.5)  # channels last: [C] on the last dim

    def forward(self, x):
        y = self.norm(self.dw(x).permute(0, 2, 3, 1))
        y = self.gamma * self.down(nn.functional.gelu(self.up(y)))
        return x + y.permute(0, 3, 1, 2)


class ConvNeXtLike(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 2, stride=2)
        self.blocks = nn.Sequential(ConvNeXtBlock(8), ConvNeXtBlock(8))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.LayerNorm(8),
                                  nn.Linear(8, 3))  # fmt: skip

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)))


def test_convnext_block_is_searched_end_to_end():
    x = torch.randn(2, 3, 8, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing frozen
        search = assert_faithful(ConvNeXtLike(), x, range(4))
    # the residual stream (stem, both blocks' down projections) and each hidden width
    assert set(search.channel_masks) == {"stem", "blocks/0/up", "blocks/1/up"}
    search.train()
    (search(x).sum() + 1e-3 * search.soft_cost("params")).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in search.nas_parameters())
    spec = search.arch()
    assert set(spec["parameters"]) == {"blocks.0.gamma", "blocks.1.gamma"}
    assert {"blocks.0.norm", "blocks.1.norm", "head.2"} <= set(spec["modules"])


def test_torchvision_convnext_tiny_is_searched_and_exports_exactly():
    """~3 s on one core (building the model is half of it)."""
    torch.manual_seed(0)
    model = torchvision.models.convnext_tiny().eval()
    x = torch.randn(2, 3, 32, 32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no frozen region left
        search = PIT(model, x, cost={"params": "params", "macs": "macs"})
    # 4 stages' residual streams (their downsampling convs start new ones) + 18 MLP widths
    assert len(search.channel_masks) == 22
    search.eval()
    with torch.no_grad():
        assert torch.allclose(search(x), model(x), rtol=0, atol=1e-5)
    search.train()
    (search(x).sum() + 1e-9 * search.soft_cost()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in search.nas_parameters())
    randomize_masks(search, 0)
    exported = assert_export_matches(search, x)
    assert exported.features[1][0].layer_scale.shape[0] == exported.features[0][0].out_channels
