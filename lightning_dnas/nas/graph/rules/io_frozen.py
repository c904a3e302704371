"""Graph boundary: the input's channels and everything reaching the output are kept whole
(silently frozen: the network's interface does not change), silently."""

from __future__ import annotations

from torch import fx

from ..channel_layout import Layout, Segment
from ..context import Analysis
from ..ops import nodes_in, shape_of
from ..registry import node_rule


@node_rule("placeholder")
def graph_input(an: Analysis, node: fx.Node) -> Layout | None:
    """A tensor input ``[N, C, ...]``: one silently frozen group of its C channels on dim 1."""
    shape = shape_of(node)
    if shape is None or len(shape) < 2:
        return None
    layout = Layout(1, (Segment(an.groups.new_group(shape[1]), shape[1]),))
    an.groups.freeze_silently(layout)
    return layout


@node_rule("output")
def graph_output(an: Analysis, node: fx.Node) -> Layout | None:
    """Every layout reaching the output (also inside tuples) is frozen silently."""
    for arg in nodes_in(node.args):
        for lay in an.tracked(arg):
            an.groups.freeze_silently(lay)
    return None


@node_rule("get_attr")
def attribute(an: Analysis, node: fx.Node) -> Layout | None:
    """A parameter/buffer read: untracked (an op using it decides, see layer_scale)."""
    return None
