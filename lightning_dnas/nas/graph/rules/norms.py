"""Norms masked through their affine parameters and a per-channel PReLU on dim 1:
companions, masked during the search and sliced on export.

BatchNorm and InstanceNorm normalise each channel alone. A GroupNorm of G groups of
``k = C / G`` consecutive channels mixes the channels of a group in its statistics: it is
searched in whole groups (its input's channel groups get units of ``k``), so that a kept
group keeps every channel it normalised over and its statistics are unchanged; a removed
group is zeroed by its affine parameters. The export is a copy with the kept groups
(``num_groups`` the kept count, ``k`` channels each). A unit that would straddle two channel
groups of the input freezes them, and so does a GroupNorm of one group (timm's GroupNorm1:
its one unit is every channel).

A BatchNorm / GroupNorm subclass outside torch.nn is traced through (timm's BatchNormAct2d,
GroupNormAct, GroupNorm1: their forward is ``F.batch_norm`` / ``F.group_norm`` on their own
tensors, then their ``drop`` and ``act`` submodules, each a node of its own): that call makes
the module a companion, like the module itself; the activation after it is analysed as any
other op (zero-preserving or not). A ``F.group_norm`` call is assumed to pass the module's
own ``num_groups`` (the export changes it), as timm's do."""

from __future__ import annotations

from torch import fx, nn

from ..channel_layout import Layout
from ..context import Analysis
from ..ops import arg, calling_module
from ..registry import function_rule, module_rule

# F.batch_norm(input, running_mean, running_var, weight, bias, ...): the tensors it reads.
_BN_TENSORS = ((1, "running_mean"), (2, "running_var"), (3, "weight"), (4, "bias"))
# F.group_norm(input, num_groups, weight, bias, eps).
_GN_TENSORS = ((2, "weight"), (3, "bias"))


def norm_companion(
    an: Analysis, node: fx.Node, target: str, module: nn.Module, src: Layout
) -> Layout:
    """``[N, C, *S]`` normalised per channel, or per group of ``C / G`` channels for a
    GroupNorm (searched in whole groups): the layout of the input, channels on dim 1."""
    if src.dim != 1:
        an.whole_norms.add(target)
        an.groups.freeze(src, f"`{node.name}` (normalisation over a non-channel dim)")
        return src
    if isinstance(module, nn.GroupNorm) and module.num_groups == 1 < module.num_channels:
        # One group: the only unit is every channel, searchable in name only. (Statistics
        # over the kept channels, as for a LayerNorm, would search it: not implemented.)
        an.groups.freeze(src, f"`{node.name}` (GroupNorm of one group)")
    elif isinstance(module, nn.GroupNorm):
        an.groups.tie_units(src, module.num_channels // module.num_groups,
                            f"`{node.name}` (GroupNorm group across channel groups)")  # fmt: skip
    an.companion(node, target, src)
    return src


@module_rule("batch_norm", "instance_norm", "group_norm")
def channel_norm(
    an: Analysis, node: fx.Node, module: nn.Module, src: Layout | None
) -> Layout | None:
    """A BatchNorm / InstanceNorm / GroupNorm module: :func:`norm_companion`."""
    if src is None:
        return None
    return norm_companion(an, node, str(node.target), module, src)


@module_rule("prelu")
def channel_prelu(
    an: Analysis, node: fx.Node, module: nn.Module, src: Layout | None
) -> Layout | None:
    """``max(0, x) + a_c min(0, x)`` with one slope per channel of dim 1."""
    if src is not None and src.dim == 1:
        an.companion(node, str(node.target), src)
        return src
    return an.unknown_module(node, module)


def _reads_own(node: fx.Node, owner: str, module: nn.Module,
               tensors: tuple[tuple[int, str], ...]) -> bool:
    """Whether the call ``node`` reads the tensors ``tensors`` (argument index, attribute)
    of ``module`` (dotted name ``owner``) itself; a running statistic may be absent."""
    for index, attr in tensors:
        value = arg(node, index, attr)
        read = value.target if isinstance(value, fx.Node) and value.op == "get_attr" else value
        own = None if getattr(module, attr) is None else f"{owner}.{attr}"
        if read != own and not (read is None and attr.startswith("running")):
            return False
    return True


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
    if not _reads_own(node, owner, module, _BN_TENSORS):
        # The export slices the module's own tensors: a call on others would not match.
        an.whole_norms.add(owner)
        return an.freeze_inputs(node, "batch_norm on other tensors than its module's")
    return norm_companion(an, node, owner, module, src)


@function_rule("group_norm")
def functional_group_norm(
    an: Analysis, node: fx.Node, name: str, src: Layout | None
) -> Layout | None:
    """``F.group_norm(x, G, w, b, eps)`` inside the forward of a GroupNorm (subclass: timm's
    GroupNormAct) on that module's own weight, bias and ``num_groups``: the module is masked
    and sliced as a companion, in whole groups. Any other call keeps its channels whole."""
    if src is None:
        return None
    owner = calling_module(node)
    module = an.modules.get(owner)
    if not isinstance(module, nn.GroupNorm):
        return an.freeze_inputs(node, "group_norm outside a GroupNorm module")
    if (not _reads_own(node, owner, module, _GN_TENSORS)
            or arg(node, 1, "num_groups") != module.num_groups):  # fmt: skip
        an.whole_norms.add(owner)
        return an.freeze_inputs(node, "group_norm on other tensors or groups than its module's")
    return norm_companion(an, node, owner, module, src)
