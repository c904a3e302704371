"""``x.narrow(dim, start, length)``: on the channel dim a constant slice: the pieces before,
inside and after it are searched apart and the export moves ``start`` and ``length``.
With the issue's other fixed-index examples (``y[:, :8]``, ``y[:, 8:]``,
``torch.split(y, 8, 1)``), the export (the user's class, or a ``torch.fx.GraphModule`` of
its forward when a bound moved) is rebuilt by ``apply_arch`` and written to ONNX."""

import json
import warnings

import pytest
import torch
from torch import fx, nn

from lightning_dnas import PIT, apply_arch, export_onnx
from tests.support import assert_faithful, randomize_masks

X = torch.randn(2, 3, 6, 6)


class Cut(nn.Module):
    """A 16-channel conv whose output the forward cuts at channel 8 (``how``)."""

    def __init__(self, how: str) -> None:
        super().__init__()
        self.how = how
        self.conv = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.head = nn.LazyConv2d(2, 1)

    def forward(self, x):
        y = self.conv(x)
        if self.how == "head":
            y = y[:, :8]
        elif self.how == "tail":
            y = y[:, 8:]
        elif self.how == "narrow":
            y = y.narrow(1, 0, 8)
        elif self.how == "narrow_to_end":
            y = torch.narrow(y, 1, 8, 8)
        elif self.how == "narrow_spatial":
            y = y.narrow(-1, 1, 3)
        elif self.how == "narrow_negative":
            y = y.narrow(1, -8, 8)
        else:  # "split"
            a, b = torch.split(y, 8, 1)
            y = torch.cat([b, a * 2.0], 1)
        return self.head(y)


def build(how: str) -> Cut:
    torch.manual_seed(0)
    model = Cut(how)
    model(X)
    return model


@pytest.mark.parametrize("how, pieces", [
    ("narrow", [8, 8]),  # narrow(1, 0, 8): 0-7 read, 8-15 read by nothing else
    ("narrow_to_end", [8, 8]),  # narrow(1, 8, 8): 0-7 read by nothing else, 8-15 read
])  # fmt: skip
def test_narrow_of_the_channel_dim_searches_every_piece(how, pieces):
    """The group is cut at start and start + length into searched groups, nothing frozen;
    the exported narrow reads exactly the kept channels of [start, start + length)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        search = assert_faithful(build(how), X)
    assert [m.alpha.numel() for m in search.channel_masks.values()] == pieces
    randomize_masks(search, 1)
    out = search.arch()["modules"]["conv.0"]["out"]
    inside = range(0, 8) if how == "narrow" else range(8, 16)
    assert search.export().head.in_channels == sum(c in inside for c in out)


def test_narrow_of_another_dim_keeps_the_group():
    search = assert_faithful(build("narrow_spatial"), X)
    assert [m.alpha.numel() for m in search.channel_masks.values()] == [16]


def test_narrow_with_a_negative_start_freezes():
    with pytest.warns(UserWarning, match="narrow of the channel dim with computed bounds"):
        search = assert_faithful(build("narrow_negative"), X)
    assert not search.channel_masks


@pytest.mark.parametrize("how", ["head", "tail", "narrow", "split"])
def test_fixed_cuts_export_rebuild_and_run_in_onnx(how, tmp_path):
    """Each example of the issue is searched whole and prunes something; its export (a
    GraphModule of the user's forward with the cut moved: these masks prune before every
    bound) is rebuilt by ``apply_arch`` on a fresh copy and onnxruntime computes the same."""
    model = build(how)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        search = PIT(model, X, cost="params")
    randomize_masks(search, 2)
    exported = search.export().eval()
    assert isinstance(exported, fx.GraphModule) and "cuts" in search.arch()
    assert search.hard_cost("params") < sum(
        p.numel() for m in model.modules() if isinstance(m, nn.Conv2d) for p in m.parameters())
    fresh = apply_arch(build(how), json.loads(json.dumps(search.arch())))
    fresh.load_state_dict(exported.state_dict())
    with torch.no_grad():
        assert torch.equal(fresh.eval()(X), exported(X))
    assert export_onnx(exported, X, tmp_path / "net.onnx") < 1e-4
