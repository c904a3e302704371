"""Per-channel norms (BatchNorm, InstanceNorm, a GroupNorm with one channel per group) and
a per-channel PReLU on dim 1: companions, masked during the search and sliced on export.
A GroupNorm mixing channels is not understood (its inputs are kept whole)."""

from __future__ import annotations

from torch import fx, nn

from ..channel_layout import Layout
from ..context import Analysis
from ..ops import is_channel_norm
from ..registry import module_rule


@module_rule("batch_norm", "instance_norm", "group_norm")
def channel_norm(
    an: Analysis, node: fx.Node, module: nn.Module, src: Layout | None
) -> Layout | None:
    """``[N, C, *S]`` normalised per channel: the layout of the input, channels on dim 1."""
    if not is_channel_norm(module):
        return an.unknown_module(node, module)
    if src is None:
        return None
    if src.dim != 1:
        an.groups.freeze(src, f"`{node.name}` (normalisation over a non-channel dim)")
        return src
    an.companion(node, str(node.target), src)
    return src


@module_rule("prelu")
def channel_prelu(
    an: Analysis, node: fx.Node, module: nn.Module, src: Layout | None
) -> Layout | None:
    """``max(0, x) + a_c min(0, x)`` with one slope per channel of dim 1."""
    if src is not None and src.dim == 1:
        an.companion(node, str(node.target), src)
        return src
    return an.unknown_module(node, module)
