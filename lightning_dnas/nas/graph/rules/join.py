"""A :func:`..ops.join` node (emitted by a trace hook for alternative branches whose
outputs are mixed): like a residual add, its inputs share one mask."""

from __future__ import annotations

from torch import fx

from ..channel_layout import Layout
from ..context import Analysis
from ..ops import names
from ..registry import function_rule


@function_rule(*names("join"))
def join(an: Analysis, node: fx.Node, name: str, src: Layout | None) -> Layout | None:
    """``join(*outputs)``: every output tracked, merged into one layout; an untracked one
    freezes the others (the ``untracked`` / ``mismatched`` kwargs word the warning)."""
    an.g.joins[str(node.kwargs["key"])] = node
    layouts = [an.layout(a) for a in node.args]
    if any(lay is None for lay in layouts):
        untracked = node.kwargs.get("untracked") or "an input with untracked channels"
        for lay in layouts:
            an.groups.freeze(lay, f"`{node.name}` ({untracked})")
        return next((lay for lay in layouts if lay is not None), None)
    mismatched = node.kwargs.get("mismatched") or "inputs with different channel groups"
    return an.groups.merge(layouts, f"`{node.name}` ({mismatched})")
