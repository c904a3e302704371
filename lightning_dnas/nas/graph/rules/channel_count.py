"""Values read from a tensor's shape (``x.shape``, ``x.size(d)``, ``x.numel()``,
``shape[i]``) that depend on its channel count: recorded here, checked after the loop
(:func:`..analyse.check_channel_counts`): they may only size a reshape of the same groups."""

from __future__ import annotations

from torch import fx

from ..channel_layout import Layout
from ..context import Analysis
from ..ops import arg, names, op_name, shape_of
from ..registry import function_rule


def source_node(node: fx.Node) -> fx.Node:
    """The tensor whose shape an index into ``x.shape`` / ``x.size()`` reads."""
    while node.op == "call_function" and op_name(node) == "getitem":
        node = node.args[0]
    return node.args[0]


@function_rule(*names("size"))
def shape_value(an: Analysis, node: fx.Node, name: str, src: Layout | None) -> Layout | None:
    """``x.shape`` / ``x.size(d)`` / ``x.numel()``: a value, not a tensor (no layout)."""
    if src is None or name == "dim" or (name == "getattr" and node.args[1] != "shape"):
        return None
    dim = arg(node, 1, "dim") if name == "size" else None
    rank = len(shape_of(node.args[0]) or ())
    if name in ("size", "getattr") and dim is None:
        an.sizes[node] = (src, True)
    elif name == "numel" or (rank and dim % rank == src.dim):
        an.sizes[node] = (src, False)
    return None


@function_rule("getitem", reads="size")
def shape_entry(an: Analysis, node: fx.Node, name: str, src: Layout | None) -> Layout | None:
    """``shape[i]``: the channel count when ``i`` is the channel dim (or not a constant)."""
    source, _ = an.sizes[node.args[0]]
    index = node.args[1]
    rank = len(shape_of(source_node(node)) or ())
    if not isinstance(index, int) or (rank and index % rank == source.dim):
        an.sizes[node] = (source, False)
    return None
