"""A LayerNorm over exactly the channel dim, which must be the last one (``[N, *T, C]``
normalised over C): a companion, computed over the kept channels and sliced on export.
``F.layer_norm`` inside an ``nn.LayerNorm`` subclass on that module's own weight and bias
(ConvNeXt's LayerNorm2d: permute, layer_norm, permute) is searched like the module."""

from __future__ import annotations

from typing import Any

from torch import fx, nn

from ..channel_layout import Layout
from ..context import Analysis
from ..ops import arg, calling_module, shape_of
from ..registry import function_rule, module_rule


def layer_norm(
    an: Analysis, node: fx.Node, target: str, shape: Any, src: Layout | None, what: str
) -> Layout | None:
    """Searched when ``normalized_shape == (C,)`` on the last dim; over more dims, frozen."""
    if src is None:
        return None
    rank = len(shape_of(node) or ())
    if src.dim != rank - 1 or tuple(shape) != (src.width,):
        an.whole_norms.add(target)
        return an.freeze_inputs(node, f"{what} over other dims than the channels")
    an.companion(node, target, src)
    return src


@module_rule("layer_norm")
def layer_norm_module(
    an: Analysis, node: fx.Node, module: nn.Module, src: Layout | None
) -> Layout | None:
    """``nn.LayerNorm`` itself (a subclass may compute anything: not matched here)."""
    assert isinstance(module, nn.LayerNorm)
    return layer_norm(an, node, str(node.target), module.normalized_shape, src,
                      "module LayerNorm")  # fmt: skip


@function_rule("layer_norm")
def functional_layer_norm(
    an: Analysis, node: fx.Node, name: str, src: Layout | None
) -> Layout | None:
    """``F.layer_norm`` on the weight and bias of the ``nn.LayerNorm`` whose forward calls
    it: the module is masked and sliced like a LayerNorm; any other call is frozen."""
    owner = calling_module(node)
    module = an.modules.get(owner)
    if src is None or not isinstance(module, nn.LayerNorm):
        return an.freeze_inputs(node, "layer_norm")
    for index, attr in ((2, "weight"), (3, "bias")):
        value, own = arg(node, index, attr), getattr(module, attr)
        expected = None if own is None else f"{owner}.{attr}"
        if (value.target if isinstance(value, fx.Node) and value.op == "get_attr"
                else value) != expected:  # fmt: skip
            an.whole_norms.add(owner)
            return an.freeze_inputs(node, "layer_norm on other parameters than its module's")
    return layer_norm(an, node, owner, arg(node, 1, "normalized_shape"), src, "layer_norm")
