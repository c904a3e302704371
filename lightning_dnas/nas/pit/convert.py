"""Turn an analysed network into the PIT search network (SPEC sections 2-3).

Decides where each channel group's mask is applied (folded into the norm right after a
layer, else into the layer's weights), folds detached masks into every other norm that
sees searchable channels (a LayerNorm over the channels is computed over the kept ones,
with a mask that gets gradients), and gives a channel-mixing layer a detached input mask only
where it would otherwise read a non-zero value on a pruned channel. All of it is done by
swapping layers *in the network's own module tree*, so its forward (and any
SuperNetModule in it) runs unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import fx, nn

from ..graph.channel_graph import ChannelGraph, LayerCall
from ..graph.channel_layout import Layout
from ..graph.ops import OPS, is_affine_norm, is_channel_prelu, module_op, nodes_in, op_name
from ..modules import set_submodule
from .layer_norm import MaskedLayerNorm
from .layers import ChannelVector, MaskedBatchNorm, MaskedConv, MaskedLinear, runs_own_forward
from .masks import ChannelMask, TapMask


@dataclass
class SearchPlan:
    """What the conversion built: masks by group root, tap masks by layer, masked norms
    (and PReLUs), per-channel parameters sliced on export ``{name: (dim, layout)}``."""

    masks: dict[int, ChannelMask] = field(default_factory=dict)
    taps: dict[str, TapMask] = field(default_factory=dict)
    norms: dict[str, Layout] = field(default_factory=dict)
    parameters: dict[str, tuple[int, Layout]] = field(default_factory=dict)
    input_masks: list[str] = field(default_factory=list)


def searchable_taps(conv: nn.Module) -> bool:
    """Whether a Conv1d's receptive field and dilation can be searched: kernel >= 2,
    stride 1 (SPEC: frozen for stride > 1) and zero padding."""
    return (
        isinstance(conv, nn.Conv1d) and conv.kernel_size[0] >= 2 and conv.stride[0] == 1
        and conv.padding_mode == "zeros"
    )  # fmt: skip


def reads_shape(node: fx.Node) -> bool:
    """Whether ``node`` reads only its input's shape (``x.shape``, ``x.ndim``, ``x.size()``,
    ``x.dim()``, ``x.numel()``), never its values."""
    name = op_name(node)
    if name == "getattr":
        return node.args[1] in ("shape", "ndim")
    return name in ("size", "dim", "numel")


class _Converter:
    def __init__(
        self, gm: fx.GraphModule, cg: ChannelGraph, plan: SearchPlan, root: nn.Module
    ) -> None:
        self.gm, self.cg, self.plan, self.root = gm, cg, plan, root
        self.modules = dict(root.named_modules())  # gm lacks the owners of get_attr tensors
        self.by_name: dict[str, list[LayerCall]] = {}
        for lc in cg.layers:
            self.by_name.setdefault(lc.name, []).append(lc)
        # Companion norms by node: a norm traced through is a function call (its F.batch_norm)
        # rather than a call of the module.
        self.companion_of = {node: name for node, name, _ in cg.companions}
        self.out_vectors: dict[str, ChannelVector] = {}
        self.grad_norms: set[str] = set()
        self.folded: set[fx.Node] = set()

    def vector(self, layout: Layout, detach: bool) -> ChannelVector:
        parts = []
        for s in layout.segments:
            mask = None if self.cg.is_frozen(s.group) else self.plan.masks[self.cg.root(s.group)]
            parts.append((mask, s.size, s.rep))
        return ChannelVector(parts, detach)

    def norm_after(self, lc: LayerCall) -> str | None:
        """The per-channel norm that is the only reader of this call's values (a module
        call, or the F.batch_norm of a norm traced through), else None. Reads of the shape
        alone (a norm-act's ``x.ndim`` check) do not see the values: they do not count."""
        users = [u for u in lc.node.users if not reads_shape(u)]
        if len(users) != 1:
            return None
        user = users[0]
        name = self.companion_of.get(user)
        if name is None and user.op == "call_module":
            name = str(user.target)
        return name if name is not None and is_affine_norm(self.modules[name]) else None

    def fold_at_norm(self, calls: list[LayerCall]) -> bool:
        """Fold a layer's mask into the norm right after it when every call of the layer
        feeds exactly one norm and nothing else (SPEC: conv -> bn -> * mask)."""
        return all(self.norm_after(lc) is not None for lc in calls)

    def decide_mask_points(self) -> None:
        for name, calls in self.by_name.items():
            layout = calls[0].out_layout
            if not self.cg.searchable(layout):
                continue
            if self.fold_at_norm(calls):
                self.grad_norms.update(str(self.norm_after(lc)) for lc in calls)
            else:
                self.out_vectors[name] = self.vector(layout, detach=False)
                self.folded.update(lc.node for lc in calls)
        for node, name, layout in self.cg.companions:
            if self.cg.searchable(layout) and not is_channel_prelu(self.modules[name]):
                self.folded.add(node)

    def zero_preserved(self, node: fx.Node, zero: dict[fx.Node, bool]) -> bool:
        """Whether pruned channels of ``node``'s output are exactly zero."""
        args = [a for a in node.args if isinstance(a, fx.Node)]
        if node in self.cg.pieces:  # a tuple value: zero where all its sources are
            return all(zero.get(a, True) for a in args)
        if node in self.folded and node.op == "call_module" and runs_own_forward(
                self.modules[str(node.target)]):  # fmt: skip
            return False  # a leaf norm subclass may map zeros anywhere after its norm
        if node in self.folded or not self.cg.searchable(self.cg.layouts.get(node)):
            return True
        first = zero.get(args[0], True) if args else True
        # What the op does to zeros comes from the op table (graph/ops.py): the same
        # vocabulary the channel analysis reads.
        if node.op == "call_module":
            module = self.modules[str(node.target)]
            name = module_op(module)
            rule = OPS[name].zero if name is not None else "never"
            if rule == "padding":
                return first and not getattr(module, "value", 0)
            return first if rule == "input" else False
        name = op_name(node)
        op = OPS.get(name) if name is not None else None
        if op is None or not op.function:
            return False
        if op.zero == "input":
            return first
        if op.zero == "inputs":  # cat, join: zero where every input is
            return all(zero.get(a, True) for a in nodes_in(node.args))
        if op.zero == "padding":
            value = node.kwargs.get("value", node.args[3] if len(node.args) > 3 else 0)
            return first and not value
        if op.zero in ("sum", "product", "quotient"):
            # Zero on pruned channels: operands carrying this node's channels (not one value
            # broadcast over them) whose pruned channels are zero.
            width = self.cg.layouts[node].width
            zeros = [isinstance(a, fx.Node) and a in self.cg.layouts and zero.get(a, True)
                     and self.cg.layouts[a].width == width for a in node.args[:2]]  # fmt: skip
            if op.zero == "product":
                return any(zeros)
            if op.zero == "quotient":
                return zeros[0]
            return all(z or (isinstance(a, (int, float)) and a == 0)
                       for z, a in zip(zeros, node.args[:2], strict=True))  # fmt: skip
        return False

    def layers_needing_input_masks(self) -> dict[str, ChannelVector]:
        """Mixing layers (Conv/Linear, not depthwise) whose input may be non-zero on pruned
        channels, with the detached mask to apply to that input."""
        needs: dict[str, ChannelVector] = {}
        zero: dict[fx.Node, bool] = {}
        mixers = {lc.node: lc for lc in self.cg.layers if lc.kind in ("conv", "linear")}
        for node in self.gm.graph.nodes:
            lc = mixers.get(node)
            if (lc is not None and self.cg.searchable(lc.in_layout)
                    and not zero.get(node.args[0], True)):  # fmt: skip
                needs[lc.name] = self.vector(lc.in_layout, detach=True)
            zero[node] = self.zero_preserved(node, zero)
        return needs

    def swap_layers(self, tap_masks: dict[str, TapMask]) -> None:
        input_masks = self.layers_needing_input_masks()
        self.plan.input_masks = sorted(input_masks)
        for name, calls in self.by_name.items():
            layer = calls[0].module
            out, taps, inp = self.out_vectors.get(name), tap_masks.get(name), input_masks.get(name)
            if out is None and taps is None and inp is None:
                continue
            if isinstance(layer, nn.Linear):
                set_submodule(self.root, name, MaskedLinear(layer, out, inp))
            else:
                set_submodule(self.root, name, MaskedConv(layer, out, taps, inp))
        for _node, name, layout in self.cg.companions:
            if self.cg.searchable(layout) and name not in self.plan.norms:
                self.plan.norms[name] = layout
                module = self.modules[name]
                if is_channel_prelu(module):
                    continue  # prelu(0) = 0: only sliced on export, no mask needed
                if isinstance(module, nn.LayerNorm):
                    # Its statistics depend on which channels are kept: the mask's gradient
                    # flows through them (SPEC section 3), not only through the mask point.
                    vec = self.vector(layout, detach=False)
                    set_submodule(self.root, name, MaskedLayerNorm(module, vec))
                    continue
                vec = self.vector(layout, detach=name not in self.grad_norms)
                set_submodule(self.root, name, MaskedBatchNorm(module, vec))
        self.plan.parameters = {name: (dim, layout) for name, (dim, layout)
                                in self.cg.parameters.items() if self.cg.searchable(layout)}


def build_search_network(
    root: nn.Module, gm: fx.GraphModule, cg: ChannelGraph, tap_masks: dict[str, TapMask]
) -> SearchPlan:
    """Create one :class:`ChannelMask` per searchable group and swap the layers of ``root``
    (the traced network, whose layers ``gm`` shares) for their masked versions."""
    plan = SearchPlan(taps=dict(tap_masks))
    for gid in sorted(cg.parent):
        group = cg.root(gid)
        if group not in cg.frozen and group not in plan.masks:
            plan.masks[group] = ChannelMask(cg.group_size[group] // cg.unit(group))
    conv = _Converter(gm, cg, plan, root)
    conv.decide_mask_points()
    conv.swap_layers(tap_masks)
    return plan
