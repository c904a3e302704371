"""Per-channel norms (BatchNorm, InstanceNorm, a GroupNorm with one channel per group) and
a per-channel PReLU on dim 1: companions, masked during the search and sliced on export.
A GroupNorm mixing channels is not understood (its inputs are kept whole).

A BatchNorm subclass outside torch.nn is traced through (timm's BatchNormAct2d: its forward
is ``F.batch_norm`` on its own tensors, then its ``drop`` and ``act`` submodules, each a
node of its own): that ``F.batch_norm`` call makes the module a companion, like the module
itself; the activation after it is analysed as any other op (zero-preserving or not)."""

from __future__ import annotations

from torch import fx, nn

from ..channel_layout import Layout
from ..context import Analysis
from ..ops import arg, calling_module, is_channel_norm
from ..registry import function_rule, module_rule

# F.batch_norm(input, running_mean, running_var, weight, bias, ...): the tensors it reads.
_BN_TENSORS = ((1, "running_mean"), (2, "running_var"), (3, "weight"), (4, "bias"))


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


@function_rule("batch_norm")
def functional_batch_norm(
    an: Analysis, node: fx.Node, name: str, src: Layout | None
) -> Layout | None:
    """``F.batch_norm`` inside the forward of a BatchNorm (subclass) on that module's own
    weight, bias and running statistics (or none of the statistics: batch statistics are
    per channel too): the module is masked and sliced as a companion. Any other call, or a
    call on other tensors, keeps its channels whole."""
    if src is None:
        return None
    owner = calling_module(node)
    module = an.modules.get(owner)
    if not isinstance(module, nn.modules.batchnorm._BatchNorm):
        return an.freeze_inputs(node, "batch_norm outside a BatchNorm module")
    for index, attr in _BN_TENSORS:
        value = arg(node, index, attr)
        read = value.target if isinstance(value, fx.Node) and value.op == "get_attr" else value
        own = None if getattr(module, attr) is None else f"{owner}.{attr}"
        if read != own and not (read is None and attr.startswith("running")):
            # The export slices the module's own tensors: a call on others would not match.
            an.whole_norms.add(owner)
            return an.freeze_inputs(node, "batch_norm on other tensors than its module's")
    if src.dim != 1:
        an.whole_norms.add(owner)
        return an.freeze_inputs(node, "batch_norm over a non-channel dim")
    an.companion(node, owner, src)
    return src
