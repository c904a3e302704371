"""``permute`` / ``transpose`` (``swapaxes``, ``swapdims``): the channel dim moves with its
dim, the groups are unchanged (channels-last ``[N, H, W, C]`` blocks)."""

from __future__ import annotations

from torch import fx

from ..channel_layout import Layout
from ..context import Analysis
from ..ops import names, shape_of
from ..registry import function_rule


@function_rule(*names("permute"))
def permute(an: Analysis, node: fx.Node, name: str, src: Layout | None) -> Layout | None:
    """``x.permute(*order)`` or ``x.transpose(a, b)``: channel dim ``d`` lands at
    ``order.index(d)``."""
    if src is None:
        return None
    rank = len(shape_of(node.args[0]) or ())
    if name == "transpose":
        a, b = (int(d) % rank for d in node.args[1:3])
        order = list(range(rank))
        order[a], order[b] = order[b], order[a]
    else:
        dims = node.args[1:] if len(node.args) > 2 else node.args[1]
        order = [int(d) % rank for d in dims]
    return src.with_dim(order.index(src.dim))
