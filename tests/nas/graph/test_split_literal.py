"""Sizes written in the forward: ``torch.split(y, [8, 8], 1)`` (the issue's example),
``chunk`` and ``tensor_split`` into unequal pieces. Every piece is searched on its own;
the export rewrites the module making the call as a ``torch.fx.GraphModule`` whose call
cuts the kept widths, rebuilt by ``apply_arch`` from the spec's JSON, by ``load_network``
(``weights_only=True``) and run by onnxruntime. ``unbind`` of the channel dim freezes."""

import itertools
import json
import logging

import pytest
import torch
from torch import fx, nn

from lightning_dnas import PIT, apply_arch, export_onnx
from lightning_dnas.restore import NetworkStructure, example_record, load_network, save_network
from tests.support import assert_faithful, randomize_masks

X = torch.randn(2, 3, 5, 5)


class Pieces(nn.Module):
    """A 16-channel conv cut by ``how`` into pieces, each read by its own 1x1 conv; the
    results concatenated."""

    def __init__(self, how: str) -> None:
        super().__init__()
        self.how = how
        self.conv = nn.Sequential(nn.Conv2d(3, 16, 1), nn.BatchNorm2d(16), nn.ReLU())
        widths = {"split": [8, 8], "chunk": [6, 6, 4], "tensor_split": [6, 5, 5]}[how]
        self.convs = nn.ModuleList(nn.Conv2d(w, 2, 1) for w in widths)

    def forward(self, x):
        y = self.conv(x)
        if self.how == "split":
            parts = torch.split(y, [8, 8], 1)
        elif self.how == "chunk":
            parts = y.chunk(3, dim=1)  # 16 channels: 6, 6, 4
        else:
            parts = torch.tensor_split(y, 3, 1)  # 16 channels: 6, 5, 5
        return torch.cat([conv(parts[i]) for i, conv in enumerate(self.convs)], 1)


class Net(nn.Module):
    def __init__(self, how: str) -> None:
        super().__init__()
        self.block = Pieces(how)
        self.head = nn.Conv2d(2 * len(self.block.convs), 3, 1)

    def forward(self, x):
        return self.head(self.block(x))


WIDTHS = {"split": [8, 8], "chunk": [6, 6, 4], "tensor_split": [6, 5, 5]}


def build(how: str) -> Net:
    torch.manual_seed(0)
    return Net(how)


@pytest.mark.parametrize("how", ["split", "chunk", "tensor_split"])
def test_each_piece_is_searched_and_the_export_cuts_the_kept_widths(how, caplog):
    """One mask per piece (the conv's group cut at the written offsets), none frozen, none
    tied; under random masks each piece's conv reads exactly the kept channels of its
    range, and the exported block's call cuts those widths (logged, naming the node)."""
    search = assert_faithful(build(how), X)
    widths = WIDTHS[how]
    keys = ["block/conv/0"] + [f"block/conv/0:{i}" for i in range(1, len(widths))]
    assert {k: search.channel_masks[k].alpha.numel() for k in keys} == dict(
        zip(keys, widths, strict=True))
    randomize_masks(search, 5)
    spec = json.loads(json.dumps(search.arch()))
    out = spec["modules"]["block.conv.0"]["out"]
    starts = [0, *torch.tensor(widths).cumsum(0).tolist()]
    kept = [sum(a <= c < b for c in out) for a, b in itertools.pairwise(starts)]
    for i, (a, b) in enumerate(itertools.pairwise(starts)):
        entry = spec["modules"].get(f"block.convs.{i}", {})
        assert entry.get("in") in ([c - a for c in out if a <= c < b], None)
    assert kept != widths  # these masks prune in every piece
    node = {"split": "split", "chunk": "chunk", "tensor_split": "tensor_split"}[how]
    assert spec["cuts"] == {"block": [{"call": 0, "op": how, "node": node, "widths": widths,
                                       "kept": kept}]}  # fmt: skip
    with caplog.at_level(logging.INFO, logger="lightning_dnas.nas.spec"):
        exported = search.export().eval()
    assert f"`{node}` ({how}: pieces {widths} -> {kept})" in caplog.text
    assert type(exported) is Net and isinstance(exported.block, fx.GraphModule)
    assert [c.in_channels for c in exported.block.convs] == kept
    assert all(not isinstance(m, fx.GraphModule) for m in exported.block.children())


@pytest.mark.parametrize("how", ["split", "chunk"])
def test_the_rewritten_export_rebuilds_from_the_spec_and_runs_in_onnx(how, tmp_path):
    """apply_arch on a fresh seed with the spec's JSON, and load_network of a saved file,
    give the exported network; onnxruntime computes what PyTorch does."""
    search = PIT(build(how), X)
    randomize_masks(search, 6)
    spec = json.loads(json.dumps(search.arch()))
    exported = search.export().eval()
    fresh = apply_arch(build(how), spec).eval()
    fresh.load_state_dict(exported.state_dict())
    with torch.no_grad():
        ref = exported(X)
        assert torch.equal(fresh(X), ref)
    structure = NetworkStructure("net", [spec], example=example_record(X))
    save_network(exported, structure, tmp_path / "net.pt")
    loaded = load_network(build(how), tmp_path / "net.pt").eval()  # weights_only=True
    with torch.no_grad():
        assert torch.equal(loaded(X), ref)
    assert export_onnx(exported, X, tmp_path / "net.onnx") < 1e-4


def test_a_network_without_moved_cuts_exports_as_its_own_class():
    """With every mask on nothing is pruned: the spec moves no cut and the exported block
    is the user's own class, unchanged."""
    search = PIT(build("split"), X)
    exported = search.export()
    assert "cuts" not in search.arch()
    assert type(exported.block) is Pieces


def test_a_spec_made_for_another_network_is_refused():
    search = PIT(build("split"), X)
    randomize_masks(search, 5)
    spec = search.arch()
    with pytest.raises(ValueError, match=r"call 0 \(split, pieces \[8, 8\]\) of `block`"):
        apply_arch(build("chunk"), {**spec, "modules": {}})


class Rows(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)
        self.head = nn.Conv2d(1, 2, 1)

    def forward(self, x):
        a, b = self.conv(x).unbind(1)
        return self.head((a * b).unsqueeze(1))


def test_unbind_of_the_channel_dim_freezes():
    """A pruned channel would remove one of unbind's results: its channels stay whole."""
    with pytest.warns(UserWarning, match="output channels of conv are kept whole"):
        search = assert_faithful(Rows(), X)
    assert not search.channel_masks


class ReadsWidth(nn.Module):
    """A split whose sizes the forward computes from its conv's attribute (``[4,
    self.conv.out_channels - 4]``), the conv masked on its own output (no norm after it):
    in the search network ``self.conv`` is a masked wrapper, which answers for the conv's
    attributes; on export the sizes are those read from the unpruned conv, cut to the
    kept widths."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 10, 1)
        self.left, self.right = nn.Conv2d(4, 2, 1), nn.Conv2d(6, 2, 1)

    def forward(self, x):
        a, b = torch.split(self.conv(x), [4, self.conv.out_channels - 4], 1)
        return torch.cat([self.left(a), self.right(b)], 1)


def test_sizes_read_from_a_masked_layer_attribute_search_and_export():
    torch.manual_seed(0)
    model = ReadsWidth()
    search = assert_faithful(model, X)
    assert type(search.net.conv).__name__ == "MaskedConv"
    assert search.net.conv.out_channels == 10  # the wrapped conv's, unpruned
    assert [m.alpha.numel() for k, m in search.channel_masks.items()
            if k.startswith("conv")] == [4, 6]  # fmt: skip
    randomize_masks(search, 1)
    kept = [int((m.theta() > 0.5).sum()) for k, m in search.channel_masks.items()
            if k.startswith("conv")]  # fmt: skip
    rebuilt = apply_arch(ReadsWidth(), json.loads(json.dumps(search.arch())))
    assert rebuilt.conv.out_channels == sum(kept)
    assert (rebuilt.left.in_channels, rebuilt.right.in_channels) == tuple(kept)
