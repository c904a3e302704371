"""Channel producers: a Conv (not depthwise) or Linear layer defines a new group for its
output channels; a depthwise/grouped conv (groups > 1, in == out channels) keeps its
producer's group, searched in whole groups of ``in_channels / groups`` channels."""

from __future__ import annotations

import math

from torch import fx, nn

from ..channel_graph import LayerCall
from ..channel_layout import Layout, Segment
from ..context import Analysis
from ..ops import shape_of
from ..registry import module_rule


@module_rule("conv")
def conv(
    an: Analysis, node: fx.Node, module: nn.Module, src: Layout | None, target: str | None = None
) -> Layout:
    """``[N, C_in, *S] -> [N, C_out, *S']``: channels on dim 1, ``positions = prod(S')``.
    ``target``: the layer's path when ``node`` is not a call of it (the root layer)."""
    target, groups = str(node.target) if target is None else target, an.groups
    out_shape = shape_of(node)
    assert out_shape is not None and isinstance(module, nn.modules.conv._ConvNd)
    positions = math.prod(out_shape[2:])
    if src is not None and (src.dim != 1 or src.width != module.in_channels):
        groups.freeze(src, f"`{node.name}` (conv input channels not on dim 1)")
        src = None
    width = module.in_channels // module.groups
    if module.groups > 1 and module.in_channels == module.out_channels:
        # Depthwise (width 1) or grouped conv: output group g reads input group g only,
        # so it keeps its producer's channels, searched in whole groups of `width`.
        out = src if src is not None else groups.fresh(1, module.out_channels)
        groups.tie_units(out, width, f"`{node.name}` (grouped conv across channel groups)")
        if not an.searchable_layer(target, module):
            groups.freeze_silently(out)
        kind = "depthwise" if width == 1 else "grouped"
    elif module.groups > 1:
        groups.freeze(src, f"`{node.name}` (grouped conv, groups={module.groups})")
        src = None
        out = producer(an, target, module, module.out_channels, 1, frozen=True)
        kind = "conv"
    else:
        out = producer(an, target, module, module.out_channels, 1)
        kind = "conv"
    record(an, node, target, module, kind, src, out, positions)
    return out


@module_rule("linear")
def linear(
    an: Analysis, node: fx.Node, module: nn.Module, src: Layout | None, target: str | None = None
) -> Layout:
    """``[N, *T, F_in] -> [N, *T, F_out]``: channels on the last dim, ``positions = prod(T)``.
    ``target``: as for :func:`conv`."""
    target = str(node.target) if target is None else target
    out_shape = shape_of(node)
    assert out_shape is not None and isinstance(module, nn.Linear)
    rank = len(out_shape)
    if src is not None and (src.dim != rank - 1 or src.width != module.in_features):
        an.groups.freeze(src, f"`{node.name}` (linear over a non-channel dim)")
        src = None
    out = producer(an, target, module, module.out_features, rank - 1)
    positions = math.prod(out_shape[1:-1]) if rank > 2 else 1
    record(an, node, target, module, "linear", src, out, positions)
    return out


def producer(
    an: Analysis, target: str, module: nn.Module, channels: int, dim: int,
    frozen: bool = False,
) -> Layout:  # fmt: skip
    """The output layout of layer ``target``: one new group, the same for every call."""
    known = an.groups.expand(an.producer_layout.get(target))
    if known is not None:
        return known.with_dim(dim)
    layout = Layout(dim, (Segment(an.groups.new_group(channels), channels),))
    if not an.searchable_layer(target, module):
        an.groups.freeze_silently(layout)
    elif frozen:
        an.groups.freeze(layout, "", warn=False)
    an.producer_layout[target] = layout
    return layout


def record(
    an: Analysis, node: fx.Node, target: str, module: nn.Module, kind: str,
    src: Layout | None, out: Layout, positions: int,
) -> None:  # fmt: skip
    """Append the :class:`LayerCall`; a module called twice has one weight tensor, so its
    inputs must share channels."""
    if target in an.layer_inputs:
        previous = an.groups.expand(an.layer_inputs[target])
        if previous is not None and src is not None:
            an.groups.merge([previous, src], f"`{node.name}` (shared layer inputs differ)")
        elif previous is not None or src is not None:
            an.groups.freeze(previous or src, f"`{node.name}` (shared layer inputs differ)")
    an.layer_inputs[target] = src
    an.g.layers.append(LayerCall(node, target, module, kind, src, out, positions))
