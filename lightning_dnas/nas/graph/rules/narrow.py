"""``x.narrow(dim, start, length)``: on another dim the channels pass through; on the
channel dim it is the constant slice ``x[:, start:start + length]`` (:mod:`.indexing`):
the pieces before, inside and after it are searched apart and the export moves ``start``
and ``length`` to the kept widths. Where the forward cannot be rewritten its end is fixed
(``narrow`` fails instead of clamping when the tensor is shorter than ``start +
length``): every channel before that end is kept whole and the channels after it stay
searchable (``y.narrow(1, 0, 8)`` of 16 channels keeps 0-7, searches 8-15). A negative
or computed start or length keeps the channels whole."""

from __future__ import annotations

from torch import fx

from ..channel_layout import Layout
from ..context import Analysis
from ..ops import arg, shape_of
from ..registry import function_rule
from .indexing import fixed_pieces, searched_cut


@function_rule("narrow")
def narrow(an: Analysis, node: fx.Node, name: str, src: Layout | None) -> Layout | None:
    """Layout of ``torch.narrow(x, dim, start, length)`` (or the method)."""
    if src is None:
        return None
    dim, start, length = arg(node, 1, "dim"), arg(node, 2, "start"), arg(node, 3, "length")
    rank = len(shape_of(node.args[0]) or ())
    if type(dim) is not int or rank == 0:
        return an.freeze_inputs(node, "narrow of a computed dim")
    if dim % rank != src.dim:
        return src
    if not (type(start) is int and type(length) is int and start >= 0 and length > 0):
        return an.freeze_inputs(node, "narrow of the channel dim with computed bounds")
    stop = start + length
    pieces = searched_cut(an, node, src, [start, length, src.width - stop])
    pieces = pieces or fixed_pieces(an, node, src, [start, stop], stop, "narrow")
    if pieces is None:
        return an.freeze_inputs(node, "narrow of the channel dim inside a channel's features")
    return pieces[1]
