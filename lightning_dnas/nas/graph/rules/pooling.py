"""Pooling (``[N, C, *S] -> [N, C, *S']``, modules and functions) keeps the channels on
dim 1; reductions (mean/sum/amax/amin) over dims other than the channel dim keep the
groups, the channel dim shifting down past the reduced dims unless ``keepdim``."""

from __future__ import annotations

from torch import fx, nn

from ..channel_layout import Layout
from ..context import Analysis
from ..ops import arg, names, shape_of
from ..registry import function_rule, module_rule


def spatial_only(an: Analysis, node: fx.Node, src: Layout | None, what: str) -> Layout | None:
    """An op over the dims after dim 1: the input layout if the channels are on dim 1."""
    if src is None:
        return None
    if src.dim != 1:
        return an.freeze_inputs(node, f"{what} over the channel dim")
    return src


@function_rule(*names("pool"))
def pool(an: Analysis, node: fx.Node, name: str, src: Layout | None) -> Layout | None:
    """``F.max_pool2d(x, ...)`` and friends."""
    return spatial_only(an, node, src, "pooling")


@module_rule(*names("pool", calls="module"))
def pool_module(
    an: Analysis, node: fx.Node, module: nn.Module, src: Layout | None
) -> Layout | None:
    """``nn.MaxPool2d`` and friends."""
    return spatial_only(an, node, src, "pooling")


@function_rule(*names("reduction"))
def reduction(an: Analysis, node: fx.Node, name: str, src: Layout | None) -> Layout | None:
    """``x.mean(dims, keepdim)``: frozen over all dims or over the channel dim."""
    if src is None:
        return None
    rank = len(shape_of(node.args[0]) or ())
    dims = arg(node, 1, "dim")
    keepdim = bool(arg(node, 2, "keepdim", False))
    if dims is None:
        return an.freeze_inputs(node, "reduction over all dims")
    dims = [dims] if isinstance(dims, int) else list(dims)
    dims = [d % rank for d in dims]
    if src.dim in dims:
        return an.freeze_inputs(node, "reduction over the channel dim")
    if keepdim:
        return src
    return src.with_dim(src.dim - sum(d < src.dim for d in dims))
