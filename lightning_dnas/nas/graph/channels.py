"""Channel analysis of a traced network: which tensors carry which channel groups.

A *channel group* is a set of channels that must be kept or removed together (one mask).
Every tensor node gets a :class:`Layout`: the dimension that holds channels and the groups
laid along it, ``segments``, each segment spanning ``size * rep`` entries (a channel of a
flattened ``[N, C, H, W]`` tensor covers ``rep = H*W`` consecutive features).

Rules (SPEC section 3): Conv (not depthwise) and Linear define a new group; the graph input
defines a frozen one; per-channel ops propagate it; a depthwise conv keeps its producer's
group; add/sub/mul of same-channel tensors merge groups; ``cat`` on the channel dim
concatenates segments; flatten/view/reshape keeping the batch dim multiplies ``rep``;
``chunk`` on the channel dim into equal pieces slices the segments, cutting (*refining*) a
group in two where a piece boundary falls inside it, and ties the pieces to one mask;
namedtuple outputs and split results keep their pieces' layouts. A LayerNorm over exactly
the channel (last) dim and a per-channel GroupNorm are companions (computed over the kept
channels, sliced on export), as is a Parameter/buffer read with get_attr that an elementwise
add/sub/mul/div broadcasts along the channel dim (layer scale, a learnable bias: sliced on
export). Whatever is not
understood freezes the groups flowing into it (kept whole) and is reported once, naming the
node; groups kept whole anyway (graph input/output, excluded layers) are not reported.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import TensorMetadata

from .trace import choice_mix


@dataclass(frozen=True)
class Segment:
    """``size`` channels of group ``group``, each repeated ``rep`` times along the dim."""

    group: int
    size: int
    rep: int = 1


@dataclass(frozen=True)
class Layout:
    """Channel groups laid along dimension ``dim`` (non-negative) of a tensor."""

    dim: int
    segments: tuple[Segment, ...]

    @property
    def width(self) -> int:
        """Length of the channel dimension this layout describes."""
        return sum(s.size * s.rep for s in self.segments)

    def with_dim(self, dim: int) -> Layout:
        """The same segments on another dimension."""
        return Layout(dim, self.segments)


@dataclass
class LayerCall:
    """One call of a Conv/Linear layer: what it reads and what it writes.

    ``kind`` is ``"conv"``, ``"depthwise"``, ``"grouped"`` (groups > 1, in == out channels,
    searched in whole groups) or ``"linear"``; ``in_layout`` is None when the
    layer's input channels are not tracked (kept whole); ``positions`` is the number of
    output positions per sample (H*W for a Conv2d, 1 for a Linear on ``[N, F]``).
    """

    node: fx.Node
    name: str
    module: nn.Module
    kind: str
    in_layout: Layout | None
    out_layout: Layout
    positions: int


@dataclass
class ChannelGraph:
    """Result of :func:`analyse`: layouts per node, layer calls, norms (companions), the
    choice_mix node of each expanded SuperNetModule, groups and their merges/freezes.

    ``companions`` are the norms/PReLUs (and the module owning a functional layer norm) on
    searched channels, ``(node, module name, layout)``; ``parameters`` the tensors read with
    get_attr that an elementwise op broadcasts along the channel dim, ``{dotted name: (dim
    of the tensor holding channels, layout)}``: both are sliced on export.
    ``pieces`` holds the layouts inside tuple-valued nodes (the pieces of a split/chunk,
    the fields of a namedtuple), None for an untracked piece. ``fixed`` lists groups that
    are kept whole whatever happens elsewhere (graph input/output, excluded layers): a
    freeze that only touches those is not worth a warning.
    """

    layouts: dict[fx.Node, Layout] = field(default_factory=dict)
    pieces: dict[fx.Node, list[Layout | None]] = field(default_factory=dict)
    layers: list[LayerCall] = field(default_factory=list)
    companions: list[tuple[fx.Node, str, Layout]] = field(default_factory=list)
    parameters: dict[str, tuple[int, Layout]] = field(default_factory=dict)
    choices: dict[str, fx.Node] = field(default_factory=dict)
    group_size: dict[int, int] = field(default_factory=dict)
    group_unit: dict[int, int] = field(default_factory=dict)
    parent: dict[int, int] = field(default_factory=dict)
    frozen: set[int] = field(default_factory=set)
    fixed: set[int] = field(default_factory=set)
    freeze_events: list[tuple[str, list[int]]] = field(default_factory=list)

    def root(self, group: int) -> int:
        """Representative of ``group`` after merging."""
        while self.parent[group] != group:
            self.parent[group] = self.parent[self.parent[group]]
            group = self.parent[group]
        return group

    def unit(self, group: int) -> int:
        """Consecutive channels that one mask entry of ``group`` keeps or removes together
        (1, or the group width of a grouped conv that reads the group)."""
        return self.group_unit.get(self.root(group), 1)

    def is_frozen(self, group: int) -> bool:
        """Whether the merged group of ``group`` is kept whole."""
        return self.root(group) in self.frozen

    def searchable(self, layout: Layout | None) -> bool:
        """Whether any channel of ``layout`` can be pruned."""
        return layout is not None and any(not self.is_frozen(s.group) for s in layout.segments)


CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)
# Modules whose own tensors the export slices: a get_attr of theirs is not a free parameter.
_SLICED_TYPES = (*CONV_TYPES, nn.Linear, *NORM_TYPES, nn.GroupNorm, nn.LayerNorm, nn.PReLU)
POOL_TYPES = (
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d, nn.LPPool1d, nn.LPPool2d,
)  # fmt: skip
# Elementwise functions with f(0) = 0: pruned (zero) channels stay zero through them.
ZERO_PRESERVING = frozenset({
    "relu", "relu6", "leaky_relu", "elu", "selu", "celu", "gelu", "silu", "mish", "hardswish",
    "hardtanh", "tanh", "softsign", "tanhshrink", "hardshrink", "softshrink", "dropout",
    "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout", "identity",
    "contiguous", "clone", "float", "to", "neg", "abs", "square", "detach",
    "stochastic_depth",
})  # fmt: skip
# Functions outside torch recognised by qualified name.
_FOREIGN_FUNCTIONS = {
    # Scales whole samples by 0 or 1/(1-p): zero-preserving, channels untouched.
    "torchvision.ops.stochastic_depth.stochastic_depth": "stochastic_depth",
}
# Elementwise functions with f(0) != 0: pruned channels must be re-masked before a mixer.
NON_ZERO_PRESERVING = frozenset({"sigmoid", "hardsigmoid", "exp", "cos", "softplus"})
POOL_FUNCTIONS = frozenset({
    "max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d",
    "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
    "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d",
})  # fmt: skip
REDUCTIONS = frozenset({"mean", "sum", "amax", "amin"})
# Tuple-valued functions cutting a tensor into pieces along one dim.
SPLITS = frozenset({"split", "chunk", "tensor_split", "unbind"})
RESHAPES = frozenset({"flatten", "view", "reshape", "squeeze", "unsqueeze"})
BINARY = frozenset({"add", "sub", "mul", "div"})
NON_TENSOR = frozenset({"size", "dim", "getattr", "numel"})
_ALIASES = {"truediv": "div", "concat": "cat", "concatenate": "cat", "multiply": "mul",
            "subtract": "sub", "divide": "div", "iadd": "add", "isub": "sub", "imul": "mul",
            "itruediv": "div", "_unsafe_view": "view", "swapaxes": "transpose",
            "swapdims": "transpose"}  # fmt: skip
_MODULE_FUNCTIONS: dict[type, str] = {
    nn.ReLU: "relu", nn.ReLU6: "relu6", nn.LeakyReLU: "leaky_relu", nn.ELU: "elu",
    nn.SELU: "selu", nn.CELU: "celu", nn.GELU: "gelu", nn.SiLU: "silu", nn.Mish: "mish",
    nn.Hardswish: "hardswish", nn.Hardtanh: "hardtanh", nn.Tanh: "tanh",
    nn.Softsign: "softsign", nn.Tanhshrink: "tanhshrink", nn.Hardshrink: "hardshrink",
    nn.Softshrink: "softshrink", nn.Dropout: "dropout", nn.Dropout1d: "dropout",
    nn.Dropout2d: "dropout", nn.Dropout3d: "dropout", nn.AlphaDropout: "dropout",
    nn.Identity: "identity", nn.Sigmoid: "sigmoid", nn.Hardsigmoid: "hardsigmoid",
    nn.Softplus: "softplus",
}  # fmt: skip
PAD_TYPES = (
    nn.ZeroPad1d, nn.ZeroPad2d, nn.ZeroPad3d, nn.ConstantPad1d, nn.ConstantPad2d,
    nn.ConstantPad3d, nn.ReflectionPad1d, nn.ReflectionPad2d, nn.ReflectionPad3d,
    nn.ReplicationPad1d, nn.ReplicationPad2d, nn.ReplicationPad3d, nn.CircularPad1d,
    nn.CircularPad2d, nn.CircularPad3d,
)  # fmt: skip


def op_name(node: fx.Node) -> str | None:
    """Canonical name of a call_function/call_method node (``operator.add`` -> ``"add"``,
    ``x.relu_()`` -> ``"relu"``), or None for functions outside torch/operator/builtins."""
    if node.op == "call_method":
        name = str(node.target)
    elif node.op == "call_function":
        module = getattr(node.target, "__module__", None) or ""
        name = getattr(node.target, "__name__", "")
        if f"{module}.{name}" in _FOREIGN_FUNCTIONS:
            return _FOREIGN_FUNCTIONS[f"{module}.{name}"]
        # Only torch's own namespace: a look-alike name elsewhere (``mylib.relu``) may
        # compute anything, so it must not be read as the torch function.
        if not (module == "torch" or module.startswith("torch.")
                or module in ("_operator", "operator", "builtins")):  # fmt: skip
            return None
    else:
        return None
    if name.endswith("_") and not name.startswith("_"):
        name = name[:-1]
    return _ALIASES.get(name, name)


def module_function(module: nn.Module) -> str | None:
    """Elementwise function name of an activation/dropout module (``nn.ReLU`` -> ``"relu"``)."""
    for cls, name in _MODULE_FUNCTIONS.items():
        if type(module) is cls:
            return name
    # One slope for every channel: elementwise and zero-preserving like a leaky ReLU.
    if type(module) is nn.PReLU and module.num_parameters == 1:
        return "leaky_relu"
    return None


def is_channel_prelu(module: nn.Module) -> bool:
    """A PReLU with one slope per channel: zero-preserving, its slopes sliced on export."""
    return type(module) is nn.PReLU and module.num_parameters > 1


def is_channel_norm(module: nn.Module) -> bool:
    """A norm whose statistics never mix channels (BatchNorm, InstanceNorm, a GroupNorm with
    one channel per group): a per-channel companion on dim 1."""
    if isinstance(module, nn.GroupNorm):
        return module.num_groups == module.num_channels
    return isinstance(module, NORM_TYPES)


def is_namedtuple(target: Any) -> bool:
    """Whether a call_function target builds a namedtuple (a model's structured output)."""
    return isinstance(target, type) and issubclass(target, tuple) and hasattr(target, "_fields")


def shape_of(node: Any) -> tuple[int, ...] | None:
    """Shape recorded by shape propagation, or None for non-tensor values."""
    if not isinstance(node, fx.Node):
        return None
    meta = node.meta.get("tensor_meta")
    if isinstance(meta, TensorMetadata):
        return tuple(meta.shape)
    return None


def _nodes_in(arg: Any) -> Iterator[fx.Node]:
    if isinstance(arg, fx.Node):
        yield arg
    elif isinstance(arg, (tuple, list)):
        for a in arg:
            yield from _nodes_in(a)
    elif isinstance(arg, dict):
        for a in arg.values():
            yield from _nodes_in(a)


def _arg(node: fx.Node, index: int, name: str, default: Any = None) -> Any:
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


class _Analyser:
    def __init__(
        self, gm: fx.GraphModule, searchable: Callable[[str, nn.Module], bool],
        root: nn.Module,
    ) -> None:  # fmt: skip
        self.gm = gm
        # The traced network's own modules: ``gm`` holds only its call targets, with plain
        # placeholders for the owners of get_attr tensors (a LayerNorm2d traced through).
        self.modules = dict(root.named_modules())
        self.searchable_layer = searchable
        self.g = ChannelGraph()
        self.producer_layout: dict[str, Layout] = {}
        self.layer_inputs: dict[str, Layout | None] = {}
        self.next_group = itertools.count()
        # A refined group is replaced by two groups: (id, size) of its head and its tail.
        self.refined: dict[int, tuple[tuple[int, int], tuple[int, int]]] = {}
        self.fields: dict[fx.Node, tuple[str, ...]] = {}
        # The elementwise ops reading a per-channel parameter, and the modules owning a
        # functional layer norm that could not be searched (their weights stay whole).
        self.parameter_uses: set[fx.Node] = set()
        self.whole_norms: set[str] = set()
        # Values read from the shape of a tensor with channels: (its layout, whether the
        # value is the whole shape rather than the channel count itself).
        self.sizes: dict[fx.Node, tuple[Layout, bool]] = {}

    # -- groups ---------------------------------------------------------------------------
    def new_group(self, size: int, frozen_reason: str | None = None) -> int:
        gid = next(self.next_group)
        self.g.parent[gid] = gid
        self.g.group_size[gid] = size
        if frozen_reason is not None:
            self.g.frozen.add(gid)
        return gid

    def fresh(self, dim: int, size: int) -> Layout:
        return Layout(dim, (Segment(self.new_group(size, "untracked"), size),))

    def union(self, a: int, b: int) -> None:
        ra, rb = self.g.root(a), self.g.root(b)
        if ra == rb:
            return
        self.g.parent[rb] = ra
        if rb in self.g.frozen:
            self.g.frozen.add(ra)
        self.coarsen(ra, self.g.group_unit.pop(rb, 1))

    def coarsen(self, group: int, unit: int) -> None:
        """Let one mask entry of ``group`` cover ``unit`` channels (lcm with the current)."""
        root = self.g.root(group)
        self.g.group_unit[root] = math.lcm(self.g.group_unit.get(root, 1), unit)

    def freeze(self, layout: Layout | None, reason: str, warn: bool = True) -> None:
        if layout is None:
            return
        groups = [s.group for s in layout.segments]
        # Only a freeze that changes something is reported: groups already frozen were
        # reported where that happened.
        if warn and any(not self.g.is_frozen(gid) for gid in groups):
            self.g.freeze_events.append((reason, groups))
        for gid in groups:
            self.g.frozen.add(self.g.root(gid))

    def fix(self, layout: Layout | None) -> None:
        """Freeze ``layout`` for a reason outside the graph's semantics (graph input/output,
        an excluded layer): silently, and no other freeze of these groups warns."""
        if layout is not None:
            self.freeze(layout, "", warn=False)
            self.g.fixed.update(s.group for s in layout.segments)

    # -- refinement: cutting a group in two (a split inside a layer's output) ------------
    def refine(self, group: int, at: int) -> bool:
        """Replace the merged group of ``group`` by two: its first ``at`` channels and the
        rest, in every member alike (ties between members are kept: heads with heads, tails
        with tails). False, changing nothing, when ``at`` cuts a unit of a grouped conv."""
        root = self.g.root(group)
        size, unit = self.g.group_size[root], self.g.group_unit.get(root, 1)
        if at % unit:
            return False
        members = [h for h in self.g.parent if self.g.root(h) == root]
        frozen = root in self.g.frozen
        heads, tails = [], []
        for h in members:
            head, tail = self.new_group(at), self.new_group(size - at)
            self.refined[h] = ((head, at), (tail, size - at))
            heads.append(head)
            tails.append(tail)
        for part in (heads, tails):
            for other in part[1:]:
                self.union(part[0], other)
            self.coarsen(part[0], unit)
            if frozen:
                self.g.frozen.add(self.g.root(part[0]))
        for h in members:
            del self.g.parent[h], self.g.group_size[h]
            self.g.group_unit.pop(h, None)
            self.g.frozen.discard(h)
        return True

    def leaves(self, segment: Segment) -> list[Segment]:
        """``segment`` with every refined group replaced by its current parts."""
        parts = self.refined.get(segment.group)
        if parts is None:
            return [segment]
        return [x for gid, size in parts for x in self.leaves(Segment(gid, size, segment.rep))]

    def expand(self, layout: Layout | None) -> Layout | None:
        """``layout`` in terms of the current (unrefined) groups."""
        if layout is None or not any(s.group in self.refined for s in layout.segments):
            return layout
        return Layout(layout.dim, tuple(x for s in layout.segments for x in self.leaves(s)))

    def expand_groups(self, groups: list[int]) -> list[int]:
        return [x.group for g in groups for x in self.leaves(Segment(g, 1))]

    def merge(self, layouts: list[Layout], reason: str) -> Layout:
        """Make ``layouts`` share their channels (residual add etc.); freeze if misaligned."""
        first = layouts[0]
        shape = [(s.size, s.rep) for s in first.segments]
        same_dim = len({lay.dim for lay in layouts}) == 1
        if same_dim and all([(s.size, s.rep) for s in lay.segments] == shape
                            for lay in layouts[1:]):  # fmt: skip
            for lay in layouts[1:]:
                for a, b in zip(first.segments, lay.segments, strict=True):
                    self.union(a.group, b.group)
        else:
            for lay in layouts:
                self.freeze(lay, reason)
        return first

    # -- main loop ------------------------------------------------------------------------
    def run(self) -> ChannelGraph:
        for node in self.gm.graph.nodes:
            layout = self.visit(node)
            if layout is not None:
                self.g.layouts[node] = layout
        self.check_sliced_tensors()
        self.check_channel_counts()
        self.finish_refinements()
        for gid in self.g.parent:
            root = self.g.root(gid)
            if self.g.group_size[root] % self.g.group_unit.get(root, 1):
                self.g.frozen.add(root)  # grouped convs of incompatible widths
        return self.g

    def finish_refinements(self) -> None:
        """Rewrite every recorded layout in terms of the final groups."""
        g = self.g
        g.layouts = {n: self.expand(lay) for n, lay in g.layouts.items()}
        g.pieces = {n: [self.expand(p) for p in ps] for n, ps in g.pieces.items()}
        for lc in g.layers:
            lc.in_layout, lc.out_layout = self.expand(lc.in_layout), self.expand(lc.out_layout)
        g.companions = [(n, t, self.expand(lay)) for n, t, lay in g.companions]
        g.parameters = {t: (d, self.expand(lay)) for t, (d, lay) in g.parameters.items()}
        g.freeze_events = [(r, self.expand_groups(gs)) for r, gs in g.freeze_events]
        g.fixed = set(self.expand_groups(sorted(g.fixed)))

    def check_sliced_tensors(self) -> None:
        """Freeze the channels of tensors the export would slice but whose every use is not
        understood: a per-channel parameter read by anything else than the elementwise ops
        that recorded it, a layer norm module with a call that could not be searched."""
        for target, (_dim, layout) in self.g.parameters.items():
            users = {u for n in self.gm.graph.nodes if n.op == "get_attr" and n.target == target
                     for u in n.users}  # fmt: skip
            if not users <= self.parameter_uses:
                self.freeze(self.expand(layout), f"`{target}` (parameter also used elsewhere)")
        for _node, target, layout in self.g.companions:
            if target in self.whole_norms:
                self.freeze(self.expand(layout), f"`{target}` (a layer norm call not searched)")

    def check_channel_counts(self) -> None:
        """A channel count read from a tensor's shape changes when its channels are pruned:
        it may only size a reshape of tensors carrying the same groups (``b, c, h, w =
        x.shape; y.view(b, c, -1)``). Any other use (MaxViT's ``out.reshape(B, G, P, D)`` of
        another group, ``d ** -0.5``) keeps the counted channels whole."""
        for value, (source, whole) in self.sizes.items():
            roots = [self.g.root(s.group) for s in self.expand(source).segments]
            for user in value.users:
                if whole and op_name(user) == "getitem":
                    continue  # an index into the shape: the channel count is checked alone
                lay = self.layout(user)
                if (op_name(user) in RESHAPES and lay is not None
                        and [self.g.root(s.group) for s in lay.segments] == roots):  # fmt: skip
                    continue
                self.freeze(self.expand(source), f"`{value.name}` (channel count used "
                                                 "outside a reshape of its channels)")  # fmt: skip

    def note_size(self, node: fx.Node, name: str, src: Layout | None) -> None:
        """Record ``x.shape`` / ``x.size(d)`` / ``x.numel()`` / ``shape[i]`` values that
        depend on the channel count of a tracked tensor."""
        if name == "getitem":
            source, _ = self.sizes[node.args[0]]
            index = node.args[1]
            rank = len(shape_of(source_node(node)) or ())
            if not isinstance(index, int) or (rank and index % rank == source.dim):
                self.sizes[node] = (source, False)
            return
        if src is None or name == "dim" or (name == "getattr" and node.args[1] != "shape"):
            return
        dim = _arg(node, 1, "dim") if name == "size" else None
        rank = len(shape_of(node.args[0]) or ())
        if name in ("size", "getattr") and dim is None:
            self.sizes[node] = (src, True)
        elif name == "numel" or (rank and dim % rank == src.dim):
            self.sizes[node] = (src, False)

    def companion(self, node: fx.Node, target: str, layout: Layout) -> None:
        """Record a module sliced on export with ``layout``; a module called twice has one
        set of parameters, so its calls must keep the same channels."""
        for _n, other, known in self.g.companions:
            if other == target:
                self.merge([self.expand(known), layout.with_dim(known.dim)],
                           f"`{node.name}` (shared module inputs differ)")  # fmt: skip
                break
        self.g.companions.append((node, target, layout))

    def layout(self, arg: Any) -> Layout | None:
        return self.expand(self.g.layouts.get(arg)) if isinstance(arg, fx.Node) else None

    def tracked(self, arg: Any) -> list[Layout]:
        """Layouts carried by ``arg``: its own, or those of the pieces of a tuple value."""
        if not isinstance(arg, fx.Node):
            return []
        own = self.layout(arg)
        pieces = [self.expand(p) for p in self.g.pieces.get(arg, ()) if p is not None]
        return ([own] if own is not None else []) + pieces

    def freeze_inputs(self, node: fx.Node, what: str) -> Layout | None:
        """Freeze every group flowing into ``node`` (one warning) and give its output, if a
        tensor, a new frozen group on the channel dim of its input (when the rank is kept:
        a channels-last op stays channels-last), else on dim 1."""
        inputs = [lay for arg in _nodes_in((node.args, node.kwargs)) for lay in self.tracked(arg)]
        if inputs:
            merged = Layout(inputs[0].dim, tuple(s for lay in inputs for s in lay.segments))
            self.freeze(merged, f"`{node.name}` ({what})")  # one warning for all inputs
        out = shape_of(node)
        if out is None or len(out) < 2:
            return None
        dim = 1
        for arg in _nodes_in((node.args, node.kwargs)):
            lay, shape = self.layout(arg), shape_of(arg)
            if lay is not None and shape is not None:
                dim = lay.dim if len(shape) == len(out) else 1
                break
        return self.fresh(dim, out[dim])

    def visit(self, node: fx.Node) -> Layout | None:
        if node.op == "placeholder":
            shape = shape_of(node)
            if shape is None or len(shape) < 2:
                return None
            layout = Layout(1, (Segment(self.new_group(shape[1]), shape[1]),))
            self.fix(layout)
            return layout
        if node.op == "get_attr":
            return None
        if node.op == "output":
            for arg in _nodes_in(node.args):
                for lay in self.tracked(arg):
                    self.fix(lay)
            return None
        if node.op == "call_function" and is_namedtuple(node.target):
            return self.pack(node)
        if node.op == "call_module":
            return self.visit_module(node, self.modules[str(node.target)])
        if node.target is choice_mix:
            # Candidate outputs are summed: like a residual add, they share one mask.
            self.g.choices[str(node.kwargs["choice"])] = node
            return self.binary_all(node, list(node.args))
        name = op_name(node)
        if name is None:
            return self.freeze_inputs(node, f"function {node.target!r}")
        return self.visit_function(node, name)

    # -- modules --------------------------------------------------------------------------
    def visit_module(self, node: fx.Node, module: nn.Module) -> Layout | None:
        target = str(node.target)
        src = self.layout(node.args[0]) if node.args else None
        if isinstance(module, CONV_TYPES):
            return self.conv(node, target, module, src)
        if isinstance(module, nn.Linear):
            return self.linear(node, target, module, src)
        if is_channel_norm(module):
            if src is None:
                return None
            if src.dim != 1:
                self.freeze(src, f"`{node.name}` (normalisation over a non-channel dim)")
                return src
            self.companion(node, target, src)
            return src
        if type(module) is nn.LayerNorm:  # a subclass may compute anything: frozen below
            return self.layer_norm(node, target, module.normalized_shape, src, "module LayerNorm")
        if is_channel_prelu(module) and src is not None and src.dim == 1:
            self.companion(node, target, src)
            return src
        fn = module_function(module)
        if fn is not None:
            return src
        if isinstance(module, POOL_TYPES):
            return self.spatial_only(node, src, "pooling")
        if isinstance(module, nn.Flatten):
            return self.reshape(node, src)
        if isinstance(module, PAD_TYPES):
            return self.pad(node, src, len(module.padding) // 2)
        return self.freeze_inputs(node, f"module {type(module).__name__}")

    def layer_norm(
        self, node: fx.Node, target: str, shape: Any, src: Layout | None, what: str
    ) -> Layout | None:
        """A layer norm over exactly the channel dim, which must be the last one: searched
        (computed over the kept channels, sliced on export); over more dims, frozen."""
        if src is None:
            return None
        rank = len(shape_of(node) or ())
        if src.dim != rank - 1 or tuple(shape) != (src.width,):
            self.whole_norms.add(target)
            return self.freeze_inputs(node, f"{what} over other dims than the channels")
        self.companion(node, target, src)
        return src

    def functional_layer_norm(self, node: fx.Node, src: Layout | None) -> Layout | None:
        """``F.layer_norm`` inside the forward of an ``nn.LayerNorm`` subclass on that
        module's own weight and bias (ConvNeXt's LayerNorm2d: permute, layer_norm, permute):
        the module is masked and sliced like a LayerNorm; any other call is frozen."""
        stack = node.meta.get("nn_module_stack") or {}
        owner = next(reversed(stack.values()))[0] if stack else ""
        module = self.modules.get(owner)
        if src is None or not isinstance(module, nn.LayerNorm):
            return self.freeze_inputs(node, "layer_norm")
        for index, attr in ((2, "weight"), (3, "bias")):
            arg, own = _arg(node, index, attr), getattr(module, attr)
            expected = None if own is None else f"{owner}.{attr}"
            if (arg.target if isinstance(arg, fx.Node) and arg.op == "get_attr" else arg) != (
                    expected):  # fmt: skip
                self.whole_norms.add(owner)
                return self.freeze_inputs(node, "layer_norm on other parameters than its module's")
        return self.layer_norm(node, owner, _arg(node, 1, "normalized_shape"), src, "layer_norm")

    def spatial_only(self, node: fx.Node, src: Layout | None, what: str) -> Layout | None:
        if src is None:
            return None
        if src.dim != 1:
            return self.freeze_inputs(node, f"{what} over the channel dim")
        return src

    def conv(self, node: fx.Node, target: str, conv: nn.Conv1d, src: Layout | None) -> Layout:
        out_shape = shape_of(node)
        assert out_shape is not None
        positions = math.prod(out_shape[2:])
        if src is not None and (src.dim != 1 or src.width != conv.in_channels):
            self.freeze(src, f"`{node.name}` (conv input channels not on dim 1)")
            src = None
        width = conv.in_channels // conv.groups
        if conv.groups > 1 and conv.in_channels == conv.out_channels:
            # Depthwise (width 1) or grouped conv: output group g reads input group g only,
            # so it keeps its producer's channels, searched in whole groups of `width`.
            out = src if src is not None else self.fresh(1, conv.out_channels)
            offsets = [0]
            for seg in out.segments:
                offsets.append(offsets[-1] + seg.size * seg.rep)
            if any(o % width for o in offsets) or any(s.rep != 1 and width > 1
                                                      for s in out.segments):  # fmt: skip
                self.freeze(out, f"`{node.name}` (grouped conv across channel groups)")
            for seg in out.segments:
                self.coarsen(seg.group, width)
            if not self.searchable_layer(target, conv):
                self.fix(out)
            kind = "depthwise" if width == 1 else "grouped"
        elif conv.groups > 1:
            self.freeze(src, f"`{node.name}` (grouped conv, groups={conv.groups})")
            src = None
            out = self.producer(node, target, conv, conv.out_channels, 1, frozen=True)
            kind = "conv"
        else:
            out = self.producer(node, target, conv, conv.out_channels, 1)
            kind = "conv"
        self.record(node, target, conv, kind, src, out, positions)
        return out

    def linear(self, node: fx.Node, target: str, lin: nn.Linear, src: Layout | None) -> Layout:
        out_shape = shape_of(node)
        assert out_shape is not None
        rank = len(out_shape)
        if src is not None and (src.dim != rank - 1 or src.width != lin.in_features):
            self.freeze(src, f"`{node.name}` (linear over a non-channel dim)")
            src = None
        out = self.producer(node, target, lin, lin.out_features, rank - 1)
        positions = math.prod(out_shape[1:-1]) if rank > 2 else 1
        self.record(node, target, lin, "linear", src, out, positions)
        return out

    def producer(
        self, node: fx.Node, target: str, module: nn.Module, channels: int, dim: int,
        frozen: bool = False,
    ) -> Layout:
        known = self.expand(self.producer_layout.get(target))
        if known is not None:
            return known.with_dim(dim)
        layout = Layout(dim, (Segment(self.new_group(channels), channels),))
        if not self.searchable_layer(target, module):
            self.fix(layout)
        elif frozen:
            self.freeze(layout, "", warn=False)
        self.producer_layout[target] = layout
        return layout

    def record(
        self, node: fx.Node, target: str, module: nn.Module, kind: str,
        src: Layout | None, out: Layout, positions: int,
    ) -> None:
        if target in self.layer_inputs:
            # A module called twice has one weight tensor: its inputs must share channels.
            previous = self.expand(self.layer_inputs[target])
            if previous is not None and src is not None:
                self.merge([previous, src], f"`{node.name}` (shared layer inputs differ)")
            elif previous is not None or src is not None:
                self.freeze(previous or src, f"`{node.name}` (shared layer inputs differ)")
        self.layer_inputs[target] = src
        self.g.layers.append(LayerCall(node, target, module, kind, src, out, positions))

    # -- functions ------------------------------------------------------------------------
    def visit_function(self, node: fx.Node, name: str) -> Layout | None:
        src = self.layout(node.args[0]) if node.args else None
        if node.args and node.args[0] in self.g.pieces and name in ("getitem", "getattr"):
            return self.piece(node, name)
        if name in NON_TENSOR or (name == "getitem" and node.args[0] in self.sizes):
            self.note_size(node, name, src)
            return None
        if name in ZERO_PRESERVING or name in NON_ZERO_PRESERVING:
            return src
        if name in BINARY:
            return self.binary(node, name)
        if name == "layer_norm":
            return self.functional_layer_norm(node, src)
        if name == "cat":
            return self.cat(node)
        if name in RESHAPES:
            return self.reshape(node, src)
        if name in ("permute", "transpose"):
            return self.permute(node, name, src)
        if name in REDUCTIONS:
            return self.reduction(node, src)
        if name in POOL_FUNCTIONS:
            return self.spatial_only(node, src, "pooling")
        if name == "pad":
            pad = _arg(node, 1, "pad")
            return self.pad(node, src, len(pad) // 2)
        if name == "getitem":
            return self.getitem(node, src)
        if name in SPLITS:
            return self.split(node, name, src)
        if src is None and not any(self.tracked(a) for a in _nodes_in((node.args, node.kwargs))):
            # Made without searched channels (a constant, ``class_token.expand(n, -1, -1)``):
            # untracked; where it meets searched channels, binary/cat name the reason.
            return None
        return self.freeze_inputs(node, name)

    def binary(self, node: fx.Node, name: str) -> Layout | None:
        out_shape = shape_of(node)
        if out_shape is None:
            return None
        rank = len(out_shape)
        tracked: list[Layout] = []
        operands = [a for a in node.args[:2]]
        for position, arg in enumerate(operands):
            shape = shape_of(arg)
            lay = self.layout(arg)
            if lay is None:
                continue
            mapped = lay.with_dim(lay.dim + rank - len(shape or ()))
            if name == "div" and position == 1:
                self.freeze(lay, f"`{node.name}` (divisor)", warn=False)
            if mapped.width == 1 and out_shape[mapped.dim] > 1:
                continue  # one value broadcast to every channel (a spatial gate): not merged
            tracked.append(mapped)
        if not tracked:
            return None
        dims = {lay.dim for lay in tracked}
        if len(dims) > 1:
            for lay in tracked:
                self.freeze(lay, f"`{node.name}` (operands with channels on different dims)")
            return tracked[0]
        dim = tracked[0].dim
        # A constant or untracked tensor that varies along the channel dim would no longer
        # broadcast once channels are removed: keep those channels whole.
        for arg in operands:
            shape = shape_of(arg)
            if shape is None or self.layout(arg) is not None:
                continue
            offset = dim - (rank - len(shape))
            if 0 <= offset < len(shape) and shape[offset] > 1 and not self.channel_parameter(
                    node, arg, offset, tracked[0]):  # fmt: skip
                self.freeze(tracked[0], f"`{node.name}` (per-channel constant operand)")
        return self.merge(tracked, f"`{node.name}` (operands with different channel groups)")

    def channel_parameter(self, node: fx.Node, arg: Any, dim: int, layout: Layout) -> bool:
        """Record ``arg``, a get_attr of a Parameter/buffer whose dim ``dim`` holds the
        channels of ``layout`` (ConvNeXt's layer scale ``gamma[C, 1, 1] * y``, a learnable
        bias), to be sliced on export; False if it is anything else."""
        if not isinstance(arg, fx.Node) or arg.op != "get_attr":
            return False
        target = str(arg.target)
        owner, _, leaf = target.rpartition(".")
        module = self.modules.get(owner)
        if module is None or isinstance(module, _SLICED_TYPES):
            return False  # a layer's own weight: sliced with the layer, not on its own
        tensor = getattr(module, leaf, None)
        if not isinstance(tensor, torch.Tensor) or tensor.shape[dim] != layout.width:
            return False
        known = self.g.parameters.get(target)
        if known is not None and known[0] != dim:
            return False
        if known is not None:
            reason = f"`{node.name}` (a parameter shared by different channel groups)"
            self.merge([self.expand(known[1]), layout.with_dim(known[1].dim)], reason)
        else:
            self.g.parameters[target] = (dim, layout)
        self.parameter_uses.add(node)
        return True

    def binary_all(self, node: fx.Node, args: list[Any]) -> Layout | None:
        layouts = [self.layout(a) for a in args]
        if any(lay is None for lay in layouts):
            for lay in layouts:
                self.freeze(lay, f"`{node.name}` (a choice candidate with untracked channels)")
            return next((lay for lay in layouts if lay is not None), None)
        return self.merge(layouts, f"`{node.name}` (candidates with different channel groups)")

    def cat(self, node: fx.Node) -> Layout | None:
        tensors = _arg(node, 0, "tensors")
        out_shape = shape_of(node)
        if out_shape is None or not isinstance(tensors, (tuple, list)):
            return self.freeze_inputs(node, "cat of a tuple value")
        dim = _arg(node, 1, "dim", 0)
        dim = dim % len(out_shape)
        shapes = [shape_of(t) for t in tensors]
        if any(shape is None for shape in shapes):
            return self.freeze_inputs(node, "cat of non-tensors")
        tracked = [lay for t in tensors if (lay := self.layout(t)) is not None]
        if not tracked:
            return None
        if len({lay.dim for lay in tracked}) > 1:
            return self.freeze_inputs(node, "cat with channels on different dims")
        if tracked[0].dim == dim:  # along channels: segments concatenate
            layouts = [self.layout(t) or self.fresh(dim, shape[dim])
                       for t, shape in zip(tensors, shapes, strict=True)]  # fmt: skip
            return Layout(dim, tuple(s for lay in layouts for s in lay.segments))
        out = self.merge(tracked, f"`{node.name}` (cat of different channel groups)")
        # Along another dim (tokens): an untracked operand with the channel dim (ViT's class
        # token) would keep its full width while the others are pruned.
        if any(self.layout(t) is None and shape[out.dim] > 1
               for t, shape in zip(tensors, shapes, strict=True)):  # fmt: skip
            self.freeze(out, f"`{node.name}` (cat with an unsearched operand along another dim)")
        return out

    def reshape(self, node: fx.Node, src: Layout | None) -> Layout | None:
        if src is None:
            return None
        in_shape, out_shape = shape_of(node.args[0]), shape_of(node)
        if in_shape is None or out_shape is None:
            return self.freeze_inputs(node, "reshape of unknown shape")
        mapped = map_reshape(src, in_shape, out_shape)
        if mapped is None:
            return self.freeze_inputs(node, "reshape that splits or moves the channel dim")
        return mapped

    def permute(self, node: fx.Node, name: str, src: Layout | None) -> Layout | None:
        if src is None:
            return None
        rank = len(shape_of(node.args[0]) or ())
        if name == "transpose":
            a, b = (int(d) % rank for d in node.args[1:3])
            order = list(range(rank))
            order[a], order[b] = order[b], order[a]
        else:
            dims = node.args[1:] if len(node.args) > 2 else node.args[1]
            order = [int(d) % rank for d in dims]
        return src.with_dim(order.index(src.dim))

    def reduction(self, node: fx.Node, src: Layout | None) -> Layout | None:
        if src is None:
            return None
        rank = len(shape_of(node.args[0]) or ())
        dims = _arg(node, 1, "dim")
        keepdim = bool(_arg(node, 2, "keepdim", False))
        if dims is None:
            return self.freeze_inputs(node, "reduction over all dims")
        dims = [dims] if isinstance(dims, int) else list(dims)
        dims = [d % rank for d in dims]
        if src.dim in dims:
            return self.freeze_inputs(node, "reduction over the channel dim")
        if keepdim:
            return src
        return src.with_dim(src.dim - sum(d < src.dim for d in dims))

    def pad(self, node: fx.Node, src: Layout | None, padded_dims: int) -> Layout | None:
        if src is None:
            return None
        rank = len(shape_of(node) or ())
        if src.dim >= rank - padded_dims:
            return self.freeze_inputs(node, "padding of the channel dim")
        return src

    def getitem(self, node: fx.Node, src: Layout | None) -> Layout | None:
        if src is None:
            return None
        index = node.args[1]
        rank = len(shape_of(node.args[0]) or ())
        index = index if isinstance(index, tuple) else (index,)
        if any(isinstance(i, fx.Node) for i in index):
            return self.freeze_inputs(node, "tensor indexing")
        if Ellipsis in index:
            at = index.index(Ellipsis)
            used = sum(1 for i in index if i is not None and i is not Ellipsis)
            index = index[:at] + (slice(None),) * (rank - used) + index[at + 1 :]
        in_dim, out_dim = 0, 0
        for entry in index:
            if entry is None:
                out_dim += 1
                continue
            if in_dim == src.dim:
                if entry != slice(None):
                    return self.freeze_inputs(node, "indexing of the channel dim")
                return src.with_dim(out_dim)
            if isinstance(entry, slice):
                out_dim += 1
            in_dim += 1
        return src.with_dim(out_dim + src.dim - in_dim)

    # -- tuple values: namedtuple outputs, split pieces -----------------------------------
    def pack(self, node: fx.Node) -> None:
        """A namedtuple built from tensors: its fields keep their layouts (a model returning
        ``Outputs(logits, aux)`` freezes them only if they reach the graph output)."""
        fields = tuple(node.target._fields)
        values = list(node.args) + [node.kwargs[f] for f in fields[len(node.args):]
                                    if f in node.kwargs]  # fmt: skip
        pieces: list[Layout | None] = []
        for value in values:
            if isinstance(value, fx.Node) and value not in self.g.pieces:
                pieces.append(self.layout(value))
                continue
            for arg in _nodes_in(value):  # a nested container: not followed
                for lay in self.tracked(arg):
                    self.freeze(lay, f"`{node.name}` (nested {type(value).__name__} field)")
            pieces.append(None)
        self.fields[node] = fields
        self.g.pieces[node] = pieces

    def piece(self, node: fx.Node, name: str) -> Layout | None:
        """``value[i]`` or ``value.field`` of a tuple value; anything else (a slice of the
        pieces, another attribute) freezes all of its pieces."""
        container, key = node.args[0], node.args[1]
        pieces = self.g.pieces[container]
        if name == "getattr" and key in self.fields.get(container, ()):
            key = self.fields[container].index(key)
        if isinstance(key, int) and -len(pieces) <= key < len(pieces):
            return self.expand(pieces[key])
        return self.freeze_inputs(node, f"{name} of a tuple value")

    def split(self, node: fx.Node, name: str, src: Layout | None) -> Layout | None:
        """Pieces of split/chunk/tensor_split/unbind. On another dim every piece carries
        ``src``. On the channel dim, ``chunk(n)`` (or ``tensor_split`` into n) in equal pieces
        is searched with the pieces tied to one mask: after pruning they stay equal, so the
        user's forward still cuts between them. Explicit sizes (and unequal pieces) no
        longer fit a pruned width: those channels are frozen."""
        shapes = node.meta.get("piece_shapes")
        if shapes is None:
            return self.freeze_inputs(node, f"{name} of unknown shape")
        if src is None:
            self.g.pieces[node] = [None] * len(shapes)
            return None
        rank = len(shape_of(node.args[0]) or ())
        dim = int(_arg(node, 1 if name == "unbind" else 2, "dim", 0)) % rank
        if dim != src.dim:
            lower = name == "unbind" and dim < src.dim
            self.g.pieces[node] = [src.with_dim(src.dim - 1) if lower else src] * len(shapes)
            return None
        widths = [shape[dim] for shape in shapes] if name != "unbind" else []
        sections = _arg(node, 1, "chunks", None) if name == "chunk" else (
            _arg(node, 1, "indices_or_sections", node.kwargs.get("sections")))  # fmt: skip
        # Only a cut into exactly the requested number of equal pieces still cuts between
        # the same channels at a pruned width (chunk(4) of 6 channels gives 3 pieces of 2).
        relative = name in ("chunk", "tensor_split") and isinstance(sections, int)
        tied = None
        if relative and len(widths) == sections and len(set(widths)) == 1:
            tied = self.tie(src, widths[0], len(widths))
        if tied is None:  # (a failed tie may have refined groups of src: expand it)
            reason = f"`{node.name}` ({name} of the channel dim: fixed or unequal pieces)"
            self.freeze(self.expand(src), reason)
            tied = [self.fresh(dim, w) for w in widths] if widths else [None] * len(shapes)
        self.g.pieces[node] = list(tied)
        return None

    def tie(self, src: Layout, width: int, n: int) -> list[Layout] | None:
        """Cut ``src`` into ``n`` pieces of ``width`` features whose channels share one mask
        (refining the groups the cuts fall into), or None if a cut splits a channel's run
        of features, a grouped conv's group, or pieces of different structure."""
        while True:
            layout = self.expand(src)
            assert layout is not None
            cut = _needed_cut(layout, width)
            if cut is None:
                break
            segment, at = cut
            if at is None or not self.refine(segment.group, at):
                return None
        pieces: list[list[Segment]] = [[]]
        filled = 0
        for seg in layout.segments:
            if filled == width:
                pieces.append([])
                filled = 0
            pieces[-1].append(seg)
            filled += seg.size * seg.rep
        structure = {tuple((s.size, s.rep) for s in p) for p in pieces}
        if len(pieces) != n or len(structure) != 1:
            return None
        for other in pieces[1:]:
            for a, b in zip(pieces[0], other, strict=True):
                self.union(a.group, b.group)
        return [Layout(layout.dim, tuple(p)) for p in pieces]


def source_node(node: fx.Node) -> fx.Node:
    """The tensor whose shape an index into ``x.shape`` / ``x.size()`` reads."""
    while node.op == "call_function" and op_name(node) == "getitem":
        node = node.args[0]
    return node.args[0]


def _needed_cut(layout: Layout, width: int) -> tuple[Segment, int | None] | None:
    """The first segment of ``layout`` that a cut inside it must refine so that all pieces
    of ``width`` features have their segment boundaries at the same relative offsets, with
    the channel offset of the cut (None if the cut falls inside a channel's features)."""
    ends, offset = [], 0
    for seg in layout.segments:
        offset += seg.size * seg.rep
        ends.append(offset)
    relative = sorted({e % width for e in ends} | {0})
    start = 0
    for seg, end in zip(layout.segments, ends, strict=True):
        base = start - start % width
        cuts = [base + r if base + r > start else base + r + width for r in relative]
        cut = min(cuts)
        if cut < end:
            at = cut - start
            return seg, (at // seg.rep if at % seg.rep == 0 else None)
        start = end
    return None


def map_reshape(
    src: Layout, in_shape: tuple[int, ...], out_shape: tuple[int, ...]
) -> Layout | None:
    """Where channel dim ``src.dim`` of ``in_shape`` lands in ``out_shape``, or None.

    The channel dim may be merged with the dims right after it (each channel then covers a
    contiguous run of ``rep`` features, as after ``flatten(1)``) but not split or merged with
    the dims before it.
    """
    c = src.dim
    before = math.prod(in_shape[:c])
    for j in range(len(out_shape)):
        if math.prod(out_shape[:j]) != before:
            continue
        run = in_shape[c]
        for m in range(c + 1, len(in_shape) + 1):
            if run == out_shape[j]:
                rep = run // in_shape[c]
                return Layout(j, tuple(Segment(s.group, s.size, s.rep * rep)
                                       for s in src.segments))
            if m < len(in_shape):
                run *= in_shape[m]
    return None


def analyse(
    gm: fx.GraphModule, root: nn.Module,
    searchable: Callable[[str, nn.Module], bool] = lambda n, m: True,
) -> ChannelGraph:
    """Channel layouts of every node of a shape-propagated GraphModule.

    ``searchable(name, module)`` says whether a Conv/Linear layer's own output channels may
    be searched (False for excluded layers: their group is frozen, silently). ``root`` is
    the traced network (``gm``'s module names are its own).
    """
    return _Analyser(gm, searchable, root).run()

