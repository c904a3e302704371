"""split / chunk / tensor_split / unbind: pieces carry slices of the channel groups.

chunk(n) on the channel dim into n equal pieces is searched with the pieces tied to one
mask (a pruned width is then still cut between the same channels); other cuts at constant
positions are searched piece by piece, the export moving them (literal sizes in more
detail: test_split_literal.py).
"""

import warnings

import pytest
import torch
from torch import nn

from tests.support import assert_faithful, randomize_masks

X = torch.randn(2, 3, 5, 5)


class GLU(nn.Module):
    """One conv's output chunked in two halves that gate each other."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8))
        self.head = nn.Conv2d(4, 2, 1)

    def forward(self, x):
        a, b = self.conv(x).chunk(2, dim=1)
        return self.head(a * torch.sigmoid(b))


class CatChunk(nn.Module):
    """cat(6 + 4 channels).chunk(2): the cut at 5 falls inside the first conv's group."""

    def __init__(self, how: str) -> None:
        super().__init__()
        self.how = how
        self.a = nn.Sequential(nn.Conv2d(3, 6, 1), nn.BatchNorm2d(6), nn.ReLU())
        self.b = nn.Conv2d(3, 4, 3, padding=1)
        self.c = nn.Conv2d(5, 5, 1)
        self.head = nn.Conv2d(10, 2, 1)

    def forward(self, x):
        y = torch.cat([self.a(x), self.b(x)], 1)
        if self.how == "chunk":
            p, q = torch.chunk(y, 2, 1)
        else:
            p, q = y.tensor_split(2, dim=1)
        return self.head(torch.cat([self.c(q), p + 1.0], 1))  # + 1.0: re-masked


def test_chunk_ties_the_halves_of_one_group():
    search = assert_faithful(GLU(), X, range(4))
    assert {k: m.channels for k, m in search.channel_masks.items()} == {"conv/0": 4}
    randomize_masks(search, 1)
    out = search.arch()["modules"]["conv.0"]["out"]
    half = [c for c in out if c < 4]
    assert out == half + [c + 4 for c in half]  # both halves keep the same channels


@pytest.mark.parametrize("how", ["chunk", "tensor_split"])
def test_a_cut_inside_a_group_refines_it(how):
    search = assert_faithful(CatChunk(how), X, range(4))
    # a's 6 channels become 1 + 4 + 1: pieces [a1 a2(4)] and [a3 b(4)], tied a1~a3, a2~b.
    assert {k: m.channels for k, m in search.channel_masks.items()} == {
        "a/0": 1, "a/0:1": 4, "c": 5}


class Fixed(nn.Module):
    def __init__(self, how: str) -> None:
        super().__init__()
        self.how = how
        self.a = nn.Conv2d(3, 6, 1)
        self.keep = nn.Conv2d(3, 4, 1)
        self.head = nn.LazyConv2d(2, 1)

    def forward(self, x):
        y, k = self.a(x), self.keep(x)
        if self.how == "split_list":
            p, q = torch.split(y, [2, 4], dim=1)
        elif self.how == "split_int":
            p, q = y.split(3, 1)
        elif self.how == "chunk_uneven":
            p, q, _ = y.chunk(4, 1)  # 6 channels in chunks of 2: only 3 pieces
        else:
            p, q = torch.tensor_split(y, [1], dim=1)
        return self.head(torch.cat([q, p, k], 1))


@pytest.mark.parametrize("how, pieces", [
    ("split_list", [2, 4]),  # torch.split(y, [2, 4], 1)
    ("chunk_uneven", [2, 2, 2]),  # chunk(4) of 6 channels: 3 pieces of 2
    ("split_int", [3, 3]),  # y.split(3, 1)
    ("tensor_indices", [1, 5]),  # tensor_split(y, [1], 1)
])  # fmt: skip
def test_constant_cuts_are_searched_piece_by_piece(how, pieces):
    """Every piece of a's output is a searched group of its own (nothing frozen, nothing
    tied), the export cutting the kept widths."""
    model = Fixed(how)
    model(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        search = assert_faithful(model, X)
    sizes = {k: m.alpha.numel() for k, m in search.channel_masks.items()}
    assert sizes == {"keep": 4, **{"a" + (f":{i}" if i else ""): w
                                   for i, w in enumerate(pieces)}}  # fmt: skip


class Halves(nn.Module):
    """The issue's example: a 16-channel conv cut in fixed halves, each read by its own
    conv: ``split(y, 8, 1)``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(3, 16, 1), nn.BatchNorm2d(16), nn.ReLU())
        self.left, self.right = nn.Conv2d(8, 2, 1), nn.LazyConv2d(2, 1)

    def forward(self, x):
        a, b = torch.split(self.conv(x), 8, 1)
        return self.left(a) + self.right(b)


def test_split_in_fixed_halves_searches_both_halves():
    model = Halves()
    model(X)
    search = assert_faithful(model, X)
    assert [m.alpha.numel() for m in search.channel_masks.values()] == [8, 8]
    spec = search.arch()
    out = spec["modules"]["conv.0"]["out"]  # under the last random masks
    kept = [sum(c < 8 for c in out), sum(c >= 8 for c in out)]
    assert spec["modules"]["left"]["in"] == [c for c in out if c < 8]
    assert spec["modules"]["right"]["in"] == [c - 8 for c in out if c >= 8]
    # split(y, 8) still cuts the pruned width right only when the first half is whole.
    assert spec.get("cuts") == (None if kept[0] == 8 else {"": [
        {"call": 0, "op": "split", "node": "split", "widths": [8, 8], "kept": kept}]})


class OtherDim(nn.Module):
    def __init__(self, how: str) -> None:
        super().__init__()
        self.how = how
        self.a = nn.Sequential(nn.Conv2d(3, 6, 1), nn.BatchNorm2d(6))
        self.head = nn.Conv2d(6, 2, 1)

    def forward(self, x):
        y = self.a(x)
        if self.how == "chunk":
            top, bottom = y.chunk(2, dim=2)
            y = torch.cat([bottom, top], 2)
        elif self.how == "split":
            top, bottom = torch.split(y, [2, 3], dim=-2)
            y = torch.cat([bottom * 2.0, top], -2)
        else:
            rows = y.unbind(2)
            y = rows[0] + rows[-1]
            return self.head(y.unsqueeze(2))
        return self.head(y)


@pytest.mark.parametrize("how", ["chunk", "split", "unbind"])
def test_split_on_a_spatial_dim_keeps_the_group(how):
    search = assert_faithful(OtherDim(how), X)
    assert set(search.channel_masks) == {"a/0"}


def test_chunk_across_grouped_conv_groups():
    class Net(nn.Module):
        def __init__(self, pieces: int) -> None:
            super().__init__()
            self.pieces = pieces
            self.a, self.b = nn.Conv2d(3, 4, 1), nn.Conv2d(3, 4, 1)
            self.g = nn.Conv2d(8, 8, 3, padding=1, groups=4)  # groups of 2 channels
            self.head = nn.LazyConv2d(2, 1)

        def forward(self, x):
            parts = self.g(torch.cat([self.a(x), self.b(x)], 1)).chunk(self.pieces, 1)
            return self.head(torch.cat([parts[-1], parts[0]], 1))

    two = Net(2)
    two(X)
    search = assert_faithful(two, X)
    assert {k: m.channels for k, m in search.channel_masks.items()} == {"a": 2}
    eight = Net(8)  # a cut inside a group of the grouped conv: frozen
    eight(X)
    with pytest.warns(UserWarning, match="chunk"):
        search = assert_faithful(eight, X)
    assert list(search.channel_masks) == []


class Mixed(nn.Module):
    """timm's MixedConv2d in small: ``torch.split(x, self.splits, 1)``, one depthwise conv
    of its own kernel per piece, the pieces concatenated."""

    def __init__(self, splits: list[int]) -> None:
        super().__init__()
        self.splits = splits
        self.convs = nn.ModuleList(
            nn.Conv2d(c, c, 2 * i + 1, padding=i, groups=c) for i, c in enumerate(splits))

    def forward(self, x):
        pieces = torch.split(x, self.splits, 1)
        return torch.cat([conv(pieces[i]) for i, conv in enumerate(self.convs)], 1)


class MixNetLike(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 1), nn.BatchNorm2d(8), nn.ReLU())
        self.mixed = Mixed([5, 3])
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        return self.head(self.mixed(self.stem(x)))


def test_split_sizes_held_by_an_attribute_are_searched_and_rewritten(tmp_path):
    """Each piece is a searched group of its own; the export sets ``mixed.splits`` to
    the kept widths, rebuilt by ``apply_arch`` and run by onnxruntime."""
    import json

    from lightning_dnas import apply_arch, export_onnx

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing frozen
        search = assert_faithful(MixNetLike(), X, range(3))
    assert sorted(m.alpha.numel() for m in search.channel_masks.values()) == [3, 5]
    spec = json.loads(json.dumps(search.arch()))
    out = spec["modules"]["stem.0"]["out"]
    assert spec["sizes"] == {"mixed.splits": [sum(c < 5 for c in out), sum(c >= 5 for c in out)]}
    exported = search.export().eval()
    assert exported.mixed.splits == spec["sizes"]["mixed.splits"]
    torch.manual_seed(0)
    fresh = apply_arch(MixNetLike(), spec)
    fresh.load_state_dict(exported.state_dict())
    with torch.no_grad():
        assert torch.equal(fresh.eval()(X), exported(X))
    assert export_onnx(exported, X, tmp_path / "net.onnx") < 1e-4
