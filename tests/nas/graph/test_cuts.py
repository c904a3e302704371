"""The cuts at constant channel positions and the forward rewrite that moves them
(lightning_dnas/nas/graph/cuts.py): the pieces' widths read from a call's constants,
the call rewritten to other widths, a module called twice, nested modules both rewritten,
and the fallback when a module's forward traced alone is not the one the network runs
(the channels before a bound that pruning would move are kept whole, as before)."""

import itertools
import json
import warnings

import pytest
import torch
from torch import fx, nn

from lightning_dnas import PIT, apply_arch
from lightning_dnas.nas.graph.cuts import cut_widths, own_calls, own_forward, recut
from tests.support import assert_faithful, randomize_masks

X = torch.randn(2, 3, 5, 5)


CUTS = [
    lambda y: y[:, 2:5],
    lambda y: y.narrow(1, 1, 4),
    lambda y: torch.split(y, 4, 1),
    lambda y: y.split([3, 7], dim=1),
    lambda y: torch.chunk(y, 3, 1),
    lambda y: y.tensor_split(4, 1),
    lambda y: torch.tensor_split(y, [2, 20], 1),
]


class One(nn.Module):
    """A forward making one cut."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at

    def forward(self, y):
        return CUTS[self.at](y)


def cut_node(at: int) -> tuple[fx.GraphModule, fx.Node]:
    gm = fx.symbolic_trace(One(at))
    (node,) = own_calls(gm.graph.nodes)
    return gm, node


@pytest.mark.parametrize("at, entry, widths", [
    (0, 1, [2, 3, 5]),  # y[:, 2:5] of 10
    (1, None, [1, 4, 5]),  # narrow(1, 1, 4)
    (2, None, [4, 4, 2]),  # split(y, 4)
    (3, None, [3, 7]),  # split(y, [3, 7])
    (4, None, [4, 4, 2]),  # chunk(3) of 10: pieces of ceil(10 / 3) = 4
    (5, None, [3, 3, 2, 2]),  # tensor_split(4) of 10: the first 10 % 4 = 2 one wider
    (6, None, [2, 8, 0]),  # tensor_split at [2, 20]: 20 clamped to 10
])  # fmt: skip
def test_cut_widths_of_a_10_wide_dim(at, entry, widths):
    assert cut_widths(cut_node(at)[1], 10, entry) == widths
    pieces = One(at)(torch.zeros(1, 10))  # what torch itself cuts
    pieces = [pieces] if isinstance(pieces, torch.Tensor) else pieces
    if len(pieces) == 1:
        assert pieces[0].shape[1] == widths[1]
    else:
        assert [p.shape[1] for p in pieces] == widths


@pytest.mark.parametrize("at, entry, kept", [
    (0, 1, [1, 2, 3]), (1, None, [0, 3, 2]), (2, None, [4, 1, 2]), (3, None, [2, 5]),
    (4, None, [1, 3, 2]), (5, None, [2, 2, 1, 2]), (6, None, [2, 5, 0]),
])  # fmt: skip
def test_recut_makes_the_call_cut_the_given_widths(at, entry, kept):
    """After recut the call computes pieces of ``kept`` on a tensor of their sum: checked
    by running the rewritten graph, not only by reading the constants back."""
    gm, node = cut_node(at)
    recut(node, kept, entry)
    gm.recompile()
    assert cut_widths(node, sum(kept), entry) == kept
    y = torch.arange(float(sum(kept))).view(1, -1, 1, 1)
    out = gm(y)
    pieces = [out] if isinstance(out, torch.Tensor) else list(out)
    starts = [0, *torch.tensor(kept).cumsum(0).tolist()]
    expected = [y[:, a:b] for a, b in itertools.pairwise(starts)]
    if len(pieces) == 1:  # a slice or narrow: the middle piece
        expected = [expected[1]]
    assert len(pieces) == len(expected)
    assert all(torch.equal(p, e) for p, e in zip(pieces, expected, strict=True))


def test_unbind_and_computed_bounds_are_no_cut():
    class Other(nn.Module):
        def forward(self, y):
            return y.unbind(1), y[:, ::2], y.narrow(1, -2, 2)

    nodes = own_calls(fx.symbolic_trace(Other()).graph.nodes)
    assert [cut_widths(n, 6, 1) for n in nodes] == [None, None, None]


def test_own_forward_keeps_the_module_children_and_state_dict_keys():
    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.convs = nn.ModuleList([nn.Conv2d(2, 2, 1), nn.Conv2d(2, 2, 1)])
            self.register_buffer("scale", torch.full((1, 4, 1, 1), 2.0))

        def forward(self, x):
            a, b = torch.split(x * self.scale, [2, 2], 1)
            return self.convs[0](a) + self.convs[1](b)

    block = Block()
    gm = own_forward(block)
    assert type(gm.convs) is nn.ModuleList and gm.convs[0] is block.convs[0]
    assert list(gm.state_dict()) == list(block.state_dict())
    x = torch.randn(1, 4, 3, 3)
    assert torch.equal(gm(x), block(x))


class Halves(nn.Module):
    """``x[:, :4]`` and ``x[:, 4:]`` of its 8-channel input, each through its own conv."""

    def __init__(self) -> None:
        super().__init__()
        self.left, self.right = nn.Conv2d(4, 3, 1), nn.Conv2d(4, 3, 1)

    def forward(self, x):
        return torch.cat([self.left(x[:, :4]), self.right(x[:, 4:])], 1)


class Twice(nn.Module):
    """One Halves module called on two 8-channel tensors: both calls run the same
    rewritten forward, so both inputs keep the same channels of each half."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 8, 1), nn.Conv2d(3, 8, 1)
        self.halves = Halves()
        self.head = nn.Conv2d(6, 2, 1)

    def forward(self, x):
        return self.head(self.halves(self.a(x)) * self.halves(self.b(x)))


def test_a_module_called_twice_cuts_the_same_channels_in_both_calls():
    search = assert_faithful(Twice(), X)
    # a and b share the masks of each half; each of halves' convs has its own.
    sizes = sorted(m.alpha.numel() for m in search.channel_masks.values())
    assert sizes == [3, 3, 4, 4]
    randomize_masks(search, 3)
    spec = search.arch()
    assert spec["modules"]["a"]["out"] == spec["modules"]["b"]["out"]


class Outer(nn.Module):
    """Its own forward slices ``y[:, 2:]`` of an inner Halves' output: both modules'
    forwards are rewritten, the inner one first."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 1)
        self.inner = Halves()

    def forward(self, x):
        return self.inner(self.conv(x))[:, 2:]


class TwoLevels(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.outer = Outer()
        self.head = nn.LazyConv2d(2, 1)

    def forward(self, x):
        return self.head(self.outer(x))


def test_nested_modules_are_both_rewritten_and_rebuilt():
    torch.manual_seed(0)
    model = TwoLevels()
    model(X)
    search = assert_faithful(model, X)
    randomize_masks(search, 0)
    spec = json.loads(json.dumps(search.arch()))
    assert set(spec["cuts"]) == {"outer", "outer.inner"}
    exported = search.export().eval()
    assert isinstance(exported.outer, fx.GraphModule)
    assert isinstance(exported.outer.inner, fx.GraphModule)
    torch.manual_seed(0)
    fresh = TwoLevels()
    fresh(X)
    fresh = apply_arch(fresh, spec).eval()
    fresh.load_state_dict(exported.state_dict())
    with torch.no_grad():
        assert torch.equal(fresh(X), exported(X))


class Scaled(nn.Module):
    """A forward whose graph depends on how it is called: traced alone, ``scale`` is a
    placeholder and the branch is taken; the network calls it without."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(6, 2, 1)

    def forward(self, x, scale=None):
        if scale is not None:
            x = x * scale
        return self.conv(x[:, 2:])


class Fallback(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 1)
        self.cut = Scaled()

    def forward(self, x):
        return self.cut(self.stem(x))


def test_a_forward_that_traces_differently_alone_keeps_the_channels_before_the_bound():
    """The export could not find the slice again: it keeps the user's forward, so the 2
    channels before ``x[:, 2:]``'s start are kept whole (named in the warning), the rest
    searched; the export is the user's class."""
    with pytest.warns(UserWarning, match="channels before a fixed slice bound"):
        search = assert_faithful(Fallback(), X)
    assert [m.alpha.numel() for m in search.channel_masks.values()] == [6]
    randomize_masks(search, 1)
    assert "cuts" not in search.arch()
    assert type(search.export().cut) is Scaled


def test_no_cut_and_no_warning_for_a_plain_network():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        search = PIT(nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.Conv2d(4, 2, 1)), X)
    randomize_masks(search, 0)
    assert "cuts" not in search.arch()
    assert type(search.export()) is nn.Sequential
