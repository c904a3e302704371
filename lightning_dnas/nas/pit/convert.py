"""Turn an analysed GraphModule into the PIT search network (SPEC sections 2-3).

Decides where each channel group's mask is applied (folded into the BatchNorm after a
layer, else into the layer's weights), folds detached masks into every other norm that
sees searchable channels, and inserts a detached re-mask only where a channel-mixing layer
would otherwise read a non-zero value on a pruned channel.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import fx, nn

from ..arch import set_submodule
from ..graph.channels import (
    BINARY,
    NON_TENSOR,
    NORM_TYPES,
    POOL_FUNCTIONS,
    POOL_TYPES,
    REDUCTIONS,
    RESHAPES,
    ZERO_PRESERVING,
    ChannelGraph,
    LayerCall,
    Layout,
    module_function,
    op_name,
)
from .layers import ChannelVector, MaskedBatchNorm, MaskedConv, MaskedLinear, ReMask
from .masks import ChannelMask, TapMask

_ZERO_SHAPE_OPS = RESHAPES | REDUCTIONS | POOL_FUNCTIONS | {"permute", "transpose", "getitem"}


@dataclass
class SearchPlan:
    """What the conversion built: masks by group root, tap masks by layer, norms by name."""

    masks: dict[int, ChannelMask] = field(default_factory=dict)
    taps: dict[str, TapMask] = field(default_factory=dict)
    norms: dict[str, Layout] = field(default_factory=dict)
    remasks: int = 0


def searchable_taps(conv: nn.Module) -> bool:
    """Whether a Conv1d's receptive field and dilation can be searched: kernel >= 2,
    stride 1 (SPEC: frozen for stride > 1) and zero padding."""
    return (
        isinstance(conv, nn.Conv1d) and conv.kernel_size[0] >= 2 and conv.stride[0] == 1
        and conv.padding_mode == "zeros"
    )  # fmt: skip


class _Converter:
    def __init__(self, gm: fx.GraphModule, cg: ChannelGraph, plan: SearchPlan) -> None:
        self.gm, self.cg, self.plan = gm, cg, plan
        self.modules = dict(gm.named_modules())

    def vector(self, layout: Layout, detach: bool) -> ChannelVector:
        parts = []
        for s in layout.segments:
            mask = None if self.cg.is_frozen(s.group) else self.plan.masks[self.cg.root(s.group)]
            parts.append((mask, s.size, s.rep))
        return ChannelVector(parts, detach)

    def fold_at_norm(self, calls: list[LayerCall]) -> bool:
        """Fold a layer's mask into the norm right after it when every call of the layer
        feeds exactly one norm and nothing else (SPEC: conv -> bn -> * mask)."""
        for lc in calls:
            users = list(lc.node.users)
            if len(users) != 1 or users[0].op != "call_module":
                return False
            if not isinstance(self.modules[str(users[0].target)], NORM_TYPES):
                return False
        return True

    def run(self, tap_masks: dict[str, TapMask]) -> set[fx.Node]:
        by_name: dict[str, list[LayerCall]] = {}
        for lc in self.cg.layers:
            by_name.setdefault(lc.name, []).append(lc)
        grad_norms: set[str] = set()
        folded: set[fx.Node] = set()
        for name, calls in by_name.items():
            layout = calls[0].out_layout
            out = None
            if self.cg.searchable(layout):
                if self.fold_at_norm(calls):
                    grad_norms.update(str(next(iter(lc.node.users)).target) for lc in calls)
                else:
                    out = self.vector(layout, detach=False)
                    folded.update(lc.node for lc in calls)
            layer = calls[0].module
            taps = tap_masks.get(name)
            if isinstance(layer, nn.Linear):
                if out is not None:
                    set_submodule(self.gm, name, MaskedLinear(layer, out))
            elif out is not None or taps is not None:
                set_submodule(self.gm, name, MaskedConv(layer, out, taps))
        for node, name, layout in self.cg.companions:
            if self.cg.searchable(layout) and name not in self.plan.norms:
                self.plan.norms[name] = layout
                vec = self.vector(layout, detach=name not in grad_norms)
                set_submodule(self.gm, name, MaskedBatchNorm(self.modules[name], vec))
                folded.add(node)
        return folded

    def zero_preserved(self, node: fx.Node, zero: dict[fx.Node, bool], folded: set) -> bool:
        """Whether pruned channels of ``node``'s output are exactly zero."""
        if node in folded or not self.cg.searchable(self.cg.layouts.get(node)):
            return True
        args = [a for a in node.args if isinstance(a, fx.Node)]
        first = zero.get(args[0], True) if args else True
        if node.op == "call_module":
            module = self.modules[str(node.target)]
            if module_function(module) in ZERO_PRESERVING or isinstance(module, POOL_TYPES):
                return first
            if isinstance(module, (nn.Flatten, nn.ZeroPad2d)):
                return first
            return False
        name = op_name(node)
        if name in ZERO_PRESERVING or name in _ZERO_SHAPE_OPS or name in NON_TENSOR:
            return first
        if name == "pad":
            value = node.kwargs.get("value", node.args[3] if len(node.args) > 3 else 0)
            return first and not value
        if name in BINARY:
            tracked = [zero.get(a, True) for a in node.args[:2] if a in self.cg.layouts]
            if name == "mul":
                return any(tracked)
            if name == "div":
                return zero.get(node.args[0], False)
            untracked = [a for a in node.args[:2] if a not in self.cg.layouts]
            return all(tracked) and all(isinstance(a, (int, float)) and a == 0 for a in untracked)
        if name == "cat":
            return all(zero.get(a, True) for a in node.args[0])
        return False

    def remask(self, folded: set[fx.Node]) -> None:
        zero: dict[fx.Node, bool] = {}
        mixers = {lc.node: lc for lc in self.cg.layers if lc.kind != "depthwise"}
        for node in list(self.gm.graph.nodes):
            lc = mixers.get(node)
            if lc is not None and lc.in_layout is not None and self.cg.searchable(lc.in_layout):
                src = node.args[0]
                if not zero.get(src, True):
                    name = f"_dnas_remask_{self.plan.remasks}"
                    self.plan.remasks += 1
                    self.gm.add_submodule(name, ReMask(self.vector(lc.in_layout, True),
                                                       lc.in_layout.dim))  # fmt: skip
                    with self.gm.graph.inserting_before(node):
                        fixed = self.gm.graph.call_module(name, (src,))
                    fixed.meta = dict(src.meta)
                    node.replace_input_with(src, fixed)
                    self.cg.layouts[fixed] = lc.in_layout
            zero[node] = self.zero_preserved(node, zero, folded)


def build_search_network(
    gm: fx.GraphModule, cg: ChannelGraph, tap_masks: dict[str, TapMask]
) -> SearchPlan:
    """Create one :class:`ChannelMask` per searchable group and rewrite ``gm`` in place
    into the masked search network. Returns the masks and what was folded where."""
    plan = SearchPlan()
    for gid in sorted(cg.parent):
        root = cg.root(gid)
        if root not in cg.frozen and root not in plan.masks:
            plan.masks[root] = ChannelMask(cg.group_size[root])
    plan.taps = dict(tap_masks)
    conv = _Converter(gm, cg, plan)
    folded = conv.run(tap_masks)
    conv.remask(folded)
    gm.graph.lint()
    gm.recompile()
    return plan

