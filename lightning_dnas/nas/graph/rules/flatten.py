"""Reshapes (flatten/view/reshape/squeeze/unsqueeze, ``nn.Flatten``) keeping the dims before
the channels: the channel dim may merge with the dims after it, each channel then covering
``rep`` consecutive features (``[N, C, H, W] -> [N, C*H*W]``: ``rep *= H*W``). Squeeze and
unsqueeze are the same rule: they only add or drop size-1 dims around the channels."""

from __future__ import annotations

import math

from torch import fx, nn

from ..channel_layout import Layout, Segment
from ..context import Analysis
from ..ops import names, shape_of
from ..registry import function_rule, module_rule


@function_rule(*names("reshape"))
def reshape(an: Analysis, node: fx.Node, name: str, src: Layout | None) -> Layout | None:
    """``x.view(shape)`` and friends: the layout of ``x`` mapped by :func:`map_reshape`."""
    if src is None:
        return None
    in_shape, out_shape = shape_of(node.args[0]), shape_of(node)
    if in_shape is None or out_shape is None:
        return an.freeze_inputs(node, "reshape of unknown shape")
    mapped = map_reshape(src, in_shape, out_shape)
    if mapped is None:
        return an.freeze_inputs(node, "reshape that splits or moves the channel dim")
    return mapped


@module_rule(*names("reshape", calls="module"))
def reshape_module(
    an: Analysis, node: fx.Node, module: nn.Module, src: Layout | None
) -> Layout | None:
    """``nn.Flatten``: like the function."""
    return reshape(an, node, "flatten", src)


def map_reshape(
    src: Layout, in_shape: tuple[int, ...], out_shape: tuple[int, ...]
) -> Layout | None:
    """Where channel dim ``src.dim`` of ``in_shape`` lands in ``out_shape``, or None.

    The channel dim may be merged with the dims right after it (each channel then covers a
    contiguous run of ``rep`` features, as after ``flatten(1)``) but not split or merged with
    the dims before it.
    """
    c = src.dim
    before = math.prod(in_shape[:c])
    for j in range(len(out_shape)):
        if math.prod(out_shape[:j]) != before:
            continue
        run = in_shape[c]
        for m in range(c + 1, len(in_shape) + 1):
            if run == out_shape[j]:
                rep = run // in_shape[c]
                return Layout(j, tuple(Segment(s.group, s.size, s.rep * rep)
                                       for s in src.segments))  # fmt: skip
            if m < len(in_shape):
                run *= in_shape[m]
    return None
