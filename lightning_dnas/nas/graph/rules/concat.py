"""``cat``: along the channel dim the segments concatenate (``[N, C1+C2, ...]`` carries the
groups of both); along another dim (tokens) the operands share one mask."""

from __future__ import annotations

from torch import fx

from ..channel_layout import Layout
from ..context import Analysis
from ..ops import arg, names, shape_of
from ..registry import function_rule


@function_rule(*names("cat"))
def cat(an: Analysis, node: fx.Node, name: str, src: Layout | None) -> Layout | None:
    """``torch.cat(tensors, dim)``."""
    tensors = arg(node, 0, "tensors")
    out_shape = shape_of(node)
    if out_shape is None or not isinstance(tensors, (tuple, list)):
        return an.freeze_inputs(node, "cat of a tuple value")
    dim = arg(node, 1, "dim", 0)
    dim = dim % len(out_shape)
    shapes = [shape_of(t) for t in tensors]
    if any(shape is None for shape in shapes):
        return an.freeze_inputs(node, "cat of non-tensors")
    tracked = [lay for t in tensors if (lay := an.layout(t)) is not None]
    if not tracked:
        return None
    if len({lay.dim for lay in tracked}) > 1:
        return an.freeze_inputs(node, "cat with channels on different dims")
    if tracked[0].dim == dim:  # along channels: segments concatenate
        layouts = [an.layout(t) or an.groups.fresh(dim, shape[dim])
                   for t, shape in zip(tensors, shapes, strict=True)]  # fmt: skip
        return Layout(dim, tuple(s for lay in layouts for s in lay.segments))
    out = an.groups.merge(tracked, f"`{node.name}` (cat of different channel groups)")
    # Along another dim (tokens): an untracked operand with the channel dim (ViT's class
    # token) would keep its full width while the others are pruned.
    if any(an.layout(t) is None and shape[out.dim] > 1
           for t, shape in zip(tensors, shapes, strict=True)):  # fmt: skip
        an.groups.freeze(out, f"`{node.name}` (cat with an unsearched operand along another dim)")
    return out
