"""Tuple values: a namedtuple output keeps its fields' layouts, ``value[i]`` /
``value.field`` of a tuple value (namedtuple, split pieces) gives that piece's layout."""

from __future__ import annotations

from torch import fx

from ..channel_layout import Layout
from ..context import Analysis
from ..ops import nodes_in
from ..registry import function_rule, node_rule


@node_rule("namedtuple")
def pack(an: Analysis, node: fx.Node) -> Layout | None:
    """A namedtuple built from tensors: its fields keep their layouts (a model returning
    ``Outputs(logits, aux)`` freezes them only if they reach the graph output)."""
    fields = tuple(node.target._fields)
    values = list(node.args) + [node.kwargs[f] for f in fields[len(node.args):]
                                if f in node.kwargs]  # fmt: skip
    pieces: list[Layout | None] = []
    for value in values:
        if isinstance(value, fx.Node) and value not in an.g.pieces:
            pieces.append(an.layout(value))
            continue
        for arg in nodes_in(value):  # a nested container: not followed
            for lay in an.tracked(arg):
                an.groups.freeze(lay, f"`{node.name}` (nested {type(value).__name__} field)")
        pieces.append(None)
    an.fields[node] = fields
    an.g.pieces[node] = pieces
    return None


@function_rule("getitem", "getattr", reads="tuple")
def piece(an: Analysis, node: fx.Node, name: str, src: Layout | None) -> Layout | None:
    """``value[i]`` or ``value.field`` of a tuple value; anything else (a slice of the
    pieces, another attribute) freezes all of its pieces."""
    container, key = node.args[0], node.args[1]
    pieces = an.g.pieces[container]
    if name == "getattr" and key in an.fields.get(container, ()):
        key = an.fields[container].index(key)
    if isinstance(key, int) and -len(pieces) <= key < len(pieces):
        return an.groups.expand(pieces[key])
    return an.freeze_inputs(node, f"{name} of a tuple value")
