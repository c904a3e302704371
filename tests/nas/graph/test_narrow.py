"""``x.narrow(dim, start, length)``: on the channel dim a constant slice whose end is always
fixed (narrow fails on a tensor shorter than ``start + length``): the channels before the
end are kept whole, those after it searched. With the issue's other fixed-index examples
(``y[:, :8]``, ``y[:, 8:]``, ``torch.split(y, 8, 1)``), the export keeps the user's forward
and is rebuilt by ``apply_arch`` and written to ONNX."""

import json

import pytest
import torch
from torch import nn

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


@pytest.mark.parametrize("how, kept_whole", [
    ("narrow", 8),  # 0-7 read at fixed positions, 8-15 read by nothing else: searched
    ("narrow_to_end", 16),  # the end 16 is fixed: pruning anything would make it fail
])  # fmt: skip
def test_narrow_of_the_channel_dim_keeps_the_channels_before_its_end(how, kept_whole):
    with pytest.warns(UserWarning, match="channels before a fixed narrow bound"):
        search = assert_faithful(build(how), X)
    searched = sum(m.alpha.numel() for m in search.channel_masks.values())
    assert searched == 16 - kept_whole
    keep = search.arch()["modules"].get("conv.0", {}).get("out") or list(range(16))
    assert keep[:kept_whole] == list(range(kept_whole))


def test_narrow_of_another_dim_keeps_the_group():
    search = assert_faithful(build("narrow_spatial"), X)
    assert [m.alpha.numel() for m in search.channel_masks.values()] == [16]


def test_narrow_with_a_negative_start_freezes():
    with pytest.warns(UserWarning, match="narrow of the channel dim with computed bounds"):
        search = assert_faithful(build("narrow_negative"), X)
    assert not search.channel_masks


@pytest.mark.parametrize("how", ["head", "tail", "narrow", "split"])
def test_fixed_cuts_export_rebuild_and_run_in_onnx(how, tmp_path):
    """Each example of the issue prunes something, and its export is the user's class:
    ``apply_arch`` on a fresh copy rebuilds it and onnxruntime computes the same."""
    model = build(how)
    with pytest.warns(UserWarning, match="fixed"):
        search = PIT(model, X, cost="params")
    randomize_masks(search, 2)
    exported = search.export().eval()
    assert type(exported) is Cut
    assert search.hard_cost("params") < sum(
        p.numel() for m in model.modules() if isinstance(m, nn.Conv2d) for p in m.parameters())
    fresh = apply_arch(build(how), json.loads(json.dumps(search.arch())))
    fresh.load_state_dict(exported.state_dict())
    with torch.no_grad():
        assert torch.equal(fresh.eval()(X), exported(X))
    assert export_onnx(exported, X, tmp_path / "net.onnx") < 1e-4
