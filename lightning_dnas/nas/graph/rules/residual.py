"""Elementwise binary ops (add/sub/mul/div, ``y = a op b`` with broadcasting): operands
carrying channels on the same dim share one mask (a residual add). One value broadcast
over every channel (a spatial gate ``[N, 1, H, W]``) is not merged; a constant varying
along the channel dim keeps the channels whole unless it is a per-channel parameter."""

from __future__ import annotations

from torch import fx

from ..channel_layout import Layout
from ..context import Analysis
from ..ops import names, shape_of
from ..registry import function_rule
from .layer_scale import channel_parameter


@function_rule(*names("binary"))
def binary(an: Analysis, node: fx.Node, name: str, src: Layout | None) -> Layout | None:
    """``a op b``: the operands' layouts, aligned from the last dim, merged."""
    out_shape = shape_of(node)
    if out_shape is None:
        return None
    rank = len(out_shape)
    tracked: list[Layout] = []
    operands = list(node.args[:2])
    for position, operand in enumerate(operands):
        shape = shape_of(operand)
        lay = an.layout(operand)
        if lay is None:
            continue
        mapped = lay.with_dim(lay.dim + rank - len(shape or ()))
        if name == "div" and position == 1:
            an.groups.freeze(lay, f"`{node.name}` (divisor)", warn=False)
        if mapped.width == 1 and out_shape[mapped.dim] > 1:
            continue  # one value broadcast to every channel (a spatial gate): not merged
        tracked.append(mapped)
    if not tracked:
        return None
    dims = {lay.dim for lay in tracked}
    if len(dims) > 1:
        for lay in tracked:
            an.groups.freeze(lay, f"`{node.name}` (operands with channels on different dims)")
        return tracked[0]
    dim = tracked[0].dim
    # A constant or untracked tensor that varies along the channel dim would no longer
    # broadcast once channels are removed: keep those channels whole.
    for operand in operands:
        shape = shape_of(operand)
        if shape is None or an.layout(operand) is not None:
            continue
        offset = dim - (rank - len(shape))
        if 0 <= offset < len(shape) and shape[offset] > 1 and not channel_parameter(
                an, node, operand, offset, tracked[0]):  # fmt: skip
            an.groups.freeze(tracked[0], f"`{node.name}` (per-channel constant operand)")
    return an.groups.merge(tracked, f"`{node.name}` (operands with different channel groups)")
