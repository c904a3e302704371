"""Padding of the last ``k`` dims (``F.pad(x, pad)`` with ``len(pad) = 2k``, ``nn.*Pad*d``)
keeps the groups unless the channel dim is among the padded ones."""

from __future__ import annotations

from torch import fx, nn

from ..channel_layout import Layout
from ..context import Analysis
from ..ops import arg, names, shape_of
from ..registry import function_rule, module_rule


def pad(an: Analysis, node: fx.Node, src: Layout | None, padded_dims: int) -> Layout | None:
    """The input layout if the channel dim is before the ``padded_dims`` last dims."""
    if src is None:
        return None
    rank = len(shape_of(node) or ())
    if src.dim >= rank - padded_dims:
        return an.freeze_inputs(node, "padding of the channel dim")
    return src


@function_rule(*names("pad"))
def pad_function(an: Analysis, node: fx.Node, name: str, src: Layout | None) -> Layout | None:
    """``F.pad(x, pad, ...)``."""
    return pad(an, node, src, len(arg(node, 1, "pad")) // 2)


@module_rule(*names("pad", calls="module"))
def pad_module(an: Analysis, node: fx.Node, module: nn.Module, src: Layout | None) -> Layout | None:
    """``nn.ZeroPad2d`` and friends."""
    return pad(an, node, src, len(module.padding) // 2)
