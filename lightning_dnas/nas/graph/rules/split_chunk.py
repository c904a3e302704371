"""split/chunk/tensor_split/unbind: tuple values whose pieces carry layouts. On another
dim every piece carries the input's groups; on the channel dim, ``chunk(n)`` (or
``tensor_split`` into n) in equal pieces is searched with the pieces tied to one mask,
cutting (*refining*) a group in two where a piece boundary falls inside it, so the user's
forward still cuts the pruned tensor in equal pieces. Explicit sizes held by a module
attribute (timm MixNet's ``torch.split(x, self.splits, 1)``) are searched piece by piece,
the export setting the attribute. Any other cut at constant positions (sizes written in
the forward, ``torch.split(y, [8, 8], 1)``; ``split(y, 8, 1)``; ``chunk`` into unequal
pieces; ``tensor_split`` at indices) is searched piece by piece too, the export rewriting
the call to the kept sizes (:func:`.indexing.searched_cut`); where that forward cannot be
rewritten, cuts with an open last piece keep the channels before the last cut whole and
search that piece, and the rest freeze. ``unbind`` of the channel dim freezes: a pruned
channel would remove one of its results."""

from __future__ import annotations

import itertools

from torch import fx

from ..channel_layout import Layout, Segment
from ..context import Analysis
from ..ops import arg, calling_module, names, shape_of
from ..registry import function_rule
from .indexing import fixed_pieces, searched_cut


@function_rule(*names("split"))
def split(an: Analysis, node: fx.Node, name: str, src: Layout | None) -> Layout | None:
    """Pieces of ``x.chunk(n, dim)`` and friends, in ``graph.pieces``. After pruning, tied
    pieces stay equal, so the user's forward still cuts between them; other pieces are
    cut at constant positions that the export moves (or the channels stay whole)."""
    shapes = node.meta.get("piece_shapes")
    if shapes is None:
        return an.freeze_inputs(node, f"{name} of unknown shape")
    if src is None:
        an.g.pieces[node] = [None] * len(shapes)
        return None
    rank = len(shape_of(node.args[0]) or ())
    dim = int(arg(node, 1 if name == "unbind" else 2, "dim", 0)) % rank
    if dim != src.dim:
        lower = name == "unbind" and dim < src.dim
        an.g.pieces[node] = [src.with_dim(src.dim - 1) if lower else src] * len(shapes)
        return None
    widths = [shape[dim] for shape in shapes] if name != "unbind" else []
    keyword = {"chunk": "chunks", "split": "split_size_or_sections"}.get(
        name, "indices_or_sections")  # fmt: skip
    sections = arg(node, 1, keyword, node.kwargs.get("split_size", node.kwargs.get("sections")))
    # Only a cut into exactly the requested number of equal pieces still cuts between
    # the same channels at a pruned width (chunk(4) of 6 channels gives 3 pieces of 2).
    relative = name in ("chunk", "tensor_split") and isinstance(sections, int)
    tied = None
    if relative and len(widths) == sections and len(set(widths)) == 1:
        tied = tie(an, src, widths[0], len(widths))
    if tied is None and widths and min(widths) > 0 and name == "split":
        tied = sizes_attribute(an, node, src, sections, widths)
    if tied is None and widths:
        tied = searched_cut(an, node, an.groups.expand(src) or src, widths)
    if tied is None and widths and min(widths) > 0 and open_ended(name, sections):
        # Constant bounds with an open last piece: like the slices of the same bounds.
        offsets = list(itertools.accumulate(widths[:-1]))
        fixed = offsets[-1] if offsets else 0
        tied = fixed_pieces(an, node, an.groups.expand(src) or src, offsets, fixed, "split")
    if tied is None:  # (a failed tie may have refined groups of src: expand it)
        reason = f"`{node.name}` ({name} of the channel dim: fixed or unequal pieces)"
        an.groups.freeze(an.groups.expand(src), reason)
        tied = [an.groups.fresh(dim, w) for w in widths] if widths else [None] * len(shapes)
    an.g.pieces[node] = list(tied)
    return None


def sizes_attribute(
    an: Analysis, node: fx.Node, src: Layout, sections: object, widths: list[int]
) -> list[Layout] | None:
    """Pieces of ``torch.split(x, self.splits, 1)`` where ``self.splits``, a list or tuple
    attribute of the module making the call, holds exactly these sizes (timm's
    MixedConv2d): every piece is searched, none tied, and the export sets the attribute to
    the kept width of each piece (``ChannelGraph.split_sizes``), so the forward cuts the
    pruned tensor between the same channels. Assumes the forward reads the attribute only
    for the split (fx inlines it: other reads cannot be seen). None when no single
    attribute holds the sizes."""
    if not isinstance(sections, (list, tuple)) or list(sections) != widths:
        return None
    owner = calling_module(node)
    module = an.modules.get(owner)
    found = [k for k, v in vars(module).items()
             if type(v) in (list, tuple) and list(v) == widths] if module is not None else []
    if len(found) != 1:
        return None
    pieces = fixed_pieces(an, node, src, list(itertools.accumulate(widths[:-1])), 0, "split")
    if pieces is None:
        return None
    attr = f"{owner}.{found[0]}" if owner else found[0]
    known = an.g.split_sizes.get(attr)
    if known is not None:  # one module called twice: both calls cut the same channels
        pieces = [an.groups.merge([an.groups.expand(k), p],
                                  f"`{node.name}` (one split size attribute, other groups)")
                  for k, p in zip(known, pieces, strict=True)]  # fmt: skip
    an.g.split_sizes[attr] = pieces
    return pieces


def open_ended(name: str, sections: object) -> bool:
    """Whether the pieces are cut at constant offsets with the last one running to the end
    (``split(y, 8, 1)``: pieces of 8, the last one what remains; ``tensor_split(y, [8, 12],
    1)``), so that pruning only the last piece leaves every cut in place. Explicit sizes
    (``split(y, [8, 8], 1)``) must add up to the width: no piece may change."""
    if name == "split":
        return type(sections) is int
    return name == "tensor_split" and isinstance(sections, (list, tuple)) and all(
        type(i) is int and i >= 0 for i in sections)  # fmt: skip


def tie(an: Analysis, src: Layout, width: int, n: int) -> list[Layout] | None:
    """Cut ``src`` into ``n`` pieces of ``width`` features whose channels share one mask
    (refining the groups the cuts fall into), or None if a cut splits a channel's run
    of features, a grouped conv's group, or pieces of different structure."""
    while True:
        layout = an.groups.expand(src)
        assert layout is not None
        cut = needed_cut(layout, width)
        if cut is None:
            break
        segment, at = cut
        if at is None or not an.groups.refine(segment.group, at):
            return None
    pieces: list[list[Segment]] = [[]]
    filled = 0
    for seg in layout.segments:
        if filled == width:
            pieces.append([])
            filled = 0
        pieces[-1].append(seg)
        filled += seg.size * seg.rep
    structure = {tuple((s.size, s.rep) for s in p) for p in pieces}
    if len(pieces) != n or len(structure) != 1:
        return None
    for other in pieces[1:]:
        for a, b in zip(pieces[0], other, strict=True):
            an.groups.union(a.group, b.group)
    return [Layout(layout.dim, tuple(p)) for p in pieces]


def needed_cut(layout: Layout, width: int) -> tuple[Segment, int | None] | None:
    """The first segment of ``layout`` that a cut inside it must refine so that all pieces
    of ``width`` features have their segment boundaries at the same relative offsets, with
    the channel offset of the cut (None if the cut falls inside a channel's features)."""
    ends, offset = [], 0
    for seg in layout.segments:
        offset += seg.size * seg.rep
        ends.append(offset)
    relative = sorted({e % width for e in ends} | {0})
    start = 0
    for seg, end in zip(layout.segments, ends, strict=True):
        base = start - start % width
        cuts = [base + r if base + r > start else base + r + width for r in relative]
        cut = min(cuts)
        if cut < end:
            at = cut - start
            return seg, (at // seg.rep if at % seg.rep == 0 else None)
        start = end
    return None
