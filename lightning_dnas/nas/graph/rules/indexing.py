"""Basic indexing of a tensor (``x[:, 0]``, ``x[..., None]``): the channel dim moves as
indices drop or add dims before it. A slice of the channel dim with constant bounds
(``x[:, :k]``, ``x[:, k:]``, GhostNet's ``out[:, :out_chs]``, DPN's residual/dense halves,
PLiNIO's grouped-conv halves ``x[:, 0:8]``, ``x[:, 8:16]``) is searched: the group is cut
at the bounds into pieces searched apart, and the export moves the bounds to the kept
widths (:func:`searched_cut`, :mod:`..cuts`). Where the forward of the module making the
slice cannot be rewritten, only the channels before a bound that pruning would move are
kept whole. A slice covering the whole dim is the identity. Any other index of the
channel dim (an integer, a step, a negative or computed bound, a tensor) keeps the
channels whole."""

from __future__ import annotations

import itertools

from torch import fx

from ..channel_graph import CutSite
from ..channel_layout import Layout, Segment
from ..context import Analysis
from ..cuts import cut_widths
from ..ops import names, shape_of
from ..registry import function_rule


@function_rule(*names("index"))
def getitem(an: Analysis, node: fx.Node, name: str, src: Layout | None) -> Layout | None:
    """``x[index]``: the layout of ``x`` on the dim its channels land on."""
    if src is None:
        return None
    index = node.args[1]
    rank = len(shape_of(node.args[0]) or ())
    index = index if isinstance(index, tuple) else (index,)
    if any(isinstance(i, fx.Node) for i in index):
        return an.freeze_inputs(node, "tensor indexing")
    raw = list(range(len(index)))  # position in the written index of each entry
    if Ellipsis in index:
        at = index.index(Ellipsis)
        used = sum(1 for i in index if i is not None and i is not Ellipsis)
        index = index[:at] + (slice(None),) * (rank - used) + index[at + 1 :]
        raw = raw[:at] + [at] * (rank - used) + raw[at + 1 :]
    in_dim, out_dim = 0, 0
    for position, entry in zip(raw, index, strict=True):
        if entry is None:
            out_dim += 1
            continue
        if in_dim == src.dim:
            return channel_slice(an, node, src, entry, out_dim, position)
        if isinstance(entry, slice):
            out_dim += 1
        in_dim += 1
    return src.with_dim(out_dim + src.dim - in_dim)


def channel_slice(
    an: Analysis, node: fx.Node, src: Layout, entry: object, out_dim: int, position: int
) -> Layout | None:
    """Layout of ``x[..., entry]`` (its channels on ``out_dim``) for ``entry``, at
    ``position`` of the written index, indexing the channel dim. For ``entry =
    start:stop`` with constant non-negative bounds the groups are refined at both bounds
    and the pieces searched, the export moving the bounds (:func:`searched_cut`); where it
    cannot, the user's forward must cut the pruned tensor between the same channels: every
    channel before ``start``, and before ``stop`` unless the slice runs to the end (pruning
    only narrows the tensor: a stop at or past its width stays past it), is kept whole."""
    width = src.width
    bounds = (entry.start, entry.stop, entry.step) if isinstance(entry, slice) else None
    if bounds is None or not all(b is None or (type(b) is int and b >= 0) for b in bounds) \
            or bounds[2] not in (None, 1):  # fmt: skip
        return an.freeze_inputs(node, "indexing of the channel dim")
    start, stop = bounds[0] or 0, width if bounds[1] is None else min(bounds[1], width)
    if start >= stop:
        return an.freeze_inputs(node, "empty slice of the channel dim")
    if start == 0 and stop == width:
        return src  # the identity
    pieces = searched_cut(an, node, src, [start, stop - start, width - stop], position)
    fixed = stop if stop < width else start  # channels before it must all stay
    pieces = pieces or fixed_pieces(an, node, src, [start, stop], fixed, "slice")
    if pieces is None:
        return an.freeze_inputs(node, "slice of the channel dim inside a channel's features")
    return pieces[1].with_dim(out_dim)


def fixed_pieces(
    an: Analysis, node: fx.Node, src: Layout, offsets: list[int], fixed: int, what: str
) -> list[Layout] | None:
    """``src`` cut at the ascending feature ``offsets`` (refining the groups they fall
    into) into the pieces between them (``len(offsets) + 1``, the first from 0, the last to
    the end; empty ones included), and the channels before ``fixed`` frozen, because the
    user's forward cuts the tensor at constant positions: a bound pruning moves would cut
    other channels. Shared by constant slices, ``narrow`` and split sizes. None, freezing
    nothing, when an offset falls inside a channel's features or a grouped conv's unit."""
    layout: Layout | None = src
    for offset in offsets:
        assert layout is not None
        layout = an.groups.cut(layout, offset)
        if layout is None:
            return None
    assert layout is not None
    layout = an.groups.expand(layout)  # a later cut may have refined an earlier segment
    assert layout is not None
    pieces: list[list[Segment]] = [[] for _ in range(len(offsets) + 1)]
    head: list[Segment] = []
    offset = 0
    for seg in layout.segments:
        if offset < fixed:
            head.append(seg)
        pieces[sum(1 for b in offsets if b <= offset)].append(seg)
        offset += seg.size * seg.rep
    if head:
        an.groups.freeze(Layout(layout.dim, tuple(head)),
                         f"`{node.name}` (channels before a fixed {what} bound)")  # fmt: skip
    return [Layout(layout.dim, tuple(p)) for p in pieces]


def searched_cut(
    an: Analysis, node: fx.Node, src: Layout, widths: list[int], entry: int | None = None
) -> list[Layout] | None:
    """The pieces of ``widths`` that the cut ``node`` (:mod:`..cuts`; ``entry``: the
    slice's position in a getitem's index) makes of ``src``, each searched on its own, the
    cut recorded in ``graph.cuts`` for the export to move to the kept widths; a module
    called twice cuts the same channels in both calls. None, changing nothing, when the
    export could not find the call again (:meth:`Analysis.cut_site`) or a bound falls
    inside a channel's features or a grouped conv's unit."""
    if cut_widths(node, src.width, entry) != widths:
        return None
    site = an.cut_site(node, src.width, entry)
    if site is None:
        return None
    known = an.g.cuts.get(site)
    if known is not None and known.widths != widths:
        # One forward cutting inputs of different widths: its constants must stay.
        an.groups.freeze(Layout(src.dim, tuple(s for p in known.pieces
                                               for s in an.groups.expand(p).segments)),
                         f"`{node.name}` (one cut of inputs of different widths)")  # fmt: skip
        return None
    pieces = fixed_pieces(an, node, src, list(itertools.accumulate(widths[:-1])), 0, "cut")
    if pieces is None:
        return None
    if known is not None:
        pieces = [an.groups.merge([an.groups.expand(k).with_dim(p.dim), p],
                                  f"`{node.name}` (one cut, other groups)")
                  for k, p in zip(known.pieces, pieces, strict=True)]  # fmt: skip
    an.g.cuts[site] = CutSite(node if known is None else known.node, entry, widths, pieces)
    return pieces
