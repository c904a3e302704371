"""Elementwise ops (activations, dropout, casts: ``y = f(x)`` entry by entry) keep the
layout of their input, as functions, methods or modules (a single-slope PReLU included)."""

from __future__ import annotations

from torch import fx, nn

from ..channel_layout import Layout
from ..context import Analysis
from ..ops import names
from ..registry import function_rule, module_rule


@function_rule(*names("elementwise"))
def elementwise(an: Analysis, node: fx.Node, name: str, src: Layout | None) -> Layout | None:
    """``f(x)``: the layout of ``x``."""
    return src


@module_rule(*names("elementwise", calls="module"))
def elementwise_module(
    an: Analysis, node: fx.Node, module: nn.Module, src: Layout | None
) -> Layout | None:
    """``module(x)`` for an activation/dropout module: the layout of ``x``."""
    return src
