"""Activation buffers of a traced network and when they are live (SPEC section 9).

From a traced GraphModule (node order = execution order) this module decides, for every
tensor value computed from the network inputs, which *buffer* holds it: its own, or its
input's (rule (a), aliases: Dropout/Identity, the reshape family, slices keeping every
element; rule (b), in-place elementwise ops such as BatchNorm in eval, activations and
``x * scalar`` write into their input's buffer when that buffer dies there). Everything
else owns a buffer (conv, linear, pooling, padding, cat, residual add, slices that drop
elements, permute...). A buffer is live from the operation creating it (inputs: from the
start) to the last operation reading it or an alias of it; network outputs stay live to
the end; an output nobody reads is not counted. While an operation runs, its inputs' and
outputs' buffers are live together.

The result, :class:`Liveness`, lists buffers (owner node, element count at batch 1) and,
per operation (*step*), the buffers live during it, so that a peak is
``max_s sum_{b live at s} bytes(b)`` for any assignment of buffer sizes. The graph layer
knows no search method: a caller may drop nodes (``skip``) and declare nodes that alias a
weighted set of other nodes (``mix``: a mixture whose sources carry weight *keys*, opaque
here); each live buffer carries the key under which it is live (None = certainly live).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn

INF = math.inf

ALIAS_MODULES: tuple[type, ...] = (
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
    nn.FeatureAlphaDropout, nn.Identity, nn.Flatten, nn.Unflatten,
)  # fmt: skip
INPLACE_MODULES: tuple[type, ...] = (
    nn.modules.batchnorm._BatchNorm, nn.ReLU, nn.ReLU6, nn.Hardswish, nn.Hardsigmoid,
    nn.Sigmoid, nn.SiLU, nn.GELU, nn.LeakyReLU, nn.Tanh, nn.Hardtanh,
)  # fmt: skip
ALIAS_FUNCTIONS = frozenset({
    "view", "reshape", "flatten", "unflatten", "squeeze", "unsqueeze", "contiguous",
    "detach", "to", "view_as", "reshape_as", "dropout", "alpha_dropout", "feature_alpha_dropout",
    "dropout1d", "dropout2d", "dropout3d", "identity",
})  # fmt: skip
INPLACE_FUNCTIONS = frozenset({
    "relu", "relu6", "hardswish", "hardsigmoid", "sigmoid", "silu", "gelu", "leaky_relu",
    "tanh", "clamp", "clip", "hardtanh", "batch_norm", "clamp_min", "clamp_max",
})  # fmt: skip
ARITHMETIC = frozenset({
    "add", "sub", "mul", "div", "truediv", "true_divide", "multiply", "subtract", "divide",
    "iadd", "isub", "imul", "itruediv", "rsub",
})  # fmt: skip
# Wrapper modules (a searched layer keeps the user's layer as ``.layer``) act as that layer.
Unwrap = Callable[[nn.Module], nn.Module]


@dataclass
class Buffer:
    """One activation buffer: created by ``owner`` (``piece`` i of a tuple-valued node,
    else None) with ``numel`` elements at batch 1; ``key`` is the weight key it was
    created under (None: certainly exists)."""

    owner: fx.Node
    piece: int | None
    numel: int
    key: Hashable | None = None


@dataclass
class Step:
    """One operation in execution order: ``live`` maps each buffer live while it runs to
    the weight key it is live under (None = certainly); ``reads``/``writes`` are the buffers
    it reads and creates or writes in place; ``ends`` those whose life ends here."""

    node: fx.Node
    live: dict[int, Hashable | None]
    reads: set[int] = field(default_factory=set)
    writes: set[int] = field(default_factory=set)
    ends: set[int] = field(default_factory=set)


@dataclass
class Liveness:
    """Buffers and steps of one network (see the module docstring); ``values`` maps a node
    (or ``(node, piece)``) to the buffers holding its value with their keys."""

    buffers: list[Buffer]
    steps: list[Step]
    values: dict[Any, list[tuple[int, Hashable | None]]]

    def peak(self, size: Callable[[int], float]) -> tuple[float, Step | None]:
        """``max_s sum_{b live at s} size(b)`` and the first step reaching it (weights of
        keyed buffers are ignored: every live buffer counts fully)."""
        best, where = -INF, None
        for step in self.steps:
            total = sum(size(b) for b in step.live)
            if total > best:
                best, where = total, step
        if where is None:  # no operation at all: the inputs are the outputs
            return float(sum(size(b) for b in range(len(self.buffers)))), None
        return best, where


def function_name(node: fx.Node) -> str | None:
    """Canonical name of a call_function/call_method target (``operator.iadd`` ->
    ``"iadd"``, ``x.relu_()`` -> ``"relu"``), None for other nodes."""
    if node.op == "call_method":
        name = str(node.target)
    elif node.op == "call_function":
        name = getattr(node.target, "__name__", "")
    else:
        return None
    if name.endswith("_") and not name.startswith("_"):
        name = name[:-1]
    return name


def _tensor_nodes(arg: Any) -> list[fx.Node]:
    out: list[fx.Node] = []
    if isinstance(arg, fx.Node):
        out.append(arg)
    elif isinstance(arg, (tuple, list)):
        for a in arg:
            out.extend(_tensor_nodes(a))
    elif isinstance(arg, dict):
        for a in arg.values():
            out.extend(_tensor_nodes(a))
    return out


def sample_shapes(gm: fx.GraphModule, inputs: Sequence[Any]) -> dict[fx.Node, Any]:
    """Shape of every tensor node (a list of shapes for a tuple of tensors) when ``gm`` runs
    on ``inputs`` in eval mode without gradients (training flags restored afterwards)."""
    shapes: dict[fx.Node, Any] = {}

    class _Recorder(fx.Interpreter):
        def run_node(self, n: fx.Node) -> Any:
            result = super().run_node(n)
            if isinstance(result, torch.Tensor):
                shapes[n] = tuple(result.shape)
            elif (
                isinstance(result, (tuple, list))
                and result
                and all(isinstance(t, torch.Tensor) for t in result)
            ):
                shapes[n] = [tuple(t.shape) for t in result]
            return result

    modes = [(m, m.training) for m in gm.modules()]
    gm.eval()
    try:
        with torch.no_grad():
            _Recorder(gm).run(*inputs)
    finally:
        for m, mode in modes:
            m.training = mode
    return shapes


def at_batch_one(inputs: Sequence[Any]) -> tuple[Any, ...]:
    """The first sample of every tensor input, batch dim kept (``x[:1]``)."""
    return tuple(t[:1] if isinstance(t, torch.Tensor) and t.dim() > 0 else t for t in inputs)


class _Classifier:
    """Which SPEC 9 rule a node follows: ``"alias"``, ``"inplace"`` or ``"owner"``."""

    def __init__(self, gm: fx.GraphModule, shapes: Mapping[fx.Node, Any], unwrap: Unwrap):
        self.gm, self.shapes, self.unwrap = gm, shapes, unwrap

    def kind(self, node: fx.Node, active: Callable[[Any], bool]) -> str:
        if node.op == "call_module":
            module = self.unwrap(self.gm.get_submodule(str(node.target)))
            if isinstance(module, ALIAS_MODULES):
                return "alias"
            return "inplace" if isinstance(module, INPLACE_MODULES) else "owner"
        name = function_name(node)
        if node.target is operator.getitem:
            src = node.args[0]
            if isinstance(src, fx.Node) and isinstance(self.shapes.get(src), list):
                return "piece"
            return "alias" if self._numel(node) == self._numel(src) else "owner"
        if name in ALIAS_FUNCTIONS:
            return "alias"
        if name in INPLACE_FUNCTIONS:
            return "inplace"
        if name in ARITHMETIC:
            acts = [a for a in _tensor_nodes((node.args, node.kwargs)) if active(a)]
            if len(acts) == 1 and self.shapes.get(acts[0]) == self.shapes.get(node):
                return "inplace"
        return "owner"

    def _numel(self, node: Any) -> int | None:
        shape = self.shapes.get(node) if isinstance(node, fx.Node) else None
        return math.prod(shape) if isinstance(shape, tuple) else None


def liveness(
    gm: fx.GraphModule,
    shapes: Mapping[fx.Node, Any],
    skip: Iterable[fx.Node] = (),
    mix: Mapping[fx.Node, Sequence[tuple[fx.Node, Hashable | None]]] | None = None,
    key_of: Callable[[fx.Node], Hashable | None] | None = None,
    unwrap: Unwrap = lambda m: m,
    combine: Callable[[Hashable, Hashable], Hashable] = lambda inner, outer: inner,
) -> Liveness:
    """Buffers and live sets of ``gm`` (see the module docstring).

    ``shapes``: :func:`sample_shapes` at batch 1. ``skip``: nodes that do not run (their
    reads do not count). ``mix``: nodes whose value is the union of the listed sources'
    values, each source under a weight key; a source already under a key gets
    ``combine(its key, the mix's key)`` (both must hold: e.g. the product of two weights).
    ``key_of``: the key of the buffers a node creates. ``unwrap``: the user's layer inside
    a wrapper module (module types decide the rules).
    """
    skipped = set(skip)
    mix = mix or {}
    nodes = [n for n in gm.graph.nodes if n not in skipped]
    pos = {n: i for i, n in enumerate(nodes)}
    classify = _Classifier(gm, shapes, unwrap)
    active: set[fx.Node] = set()
    kinds: dict[fx.Node, str] = {}
    for n in nodes:
        if n.op == "placeholder":
            if n in shapes:
                active.add(n)
        elif n.op in ("call_module", "call_function", "call_method") and n in shapes:
            srcs = [s for s, _ in mix[n]] if n in mix else _tensor_nodes((n.args, n.kwargs))
            if any(s in active for s in srcs if s not in skipped):
                active.add(n)
                kinds[n] = "mix" if n in mix else classify.kind(n, lambda a: a in active)

    # last_read[(node, piece)]: the last position reading that value (aliases and mixes are
    # values of their own; a read through them is theirs).
    last: dict[Any, float] = {}
    for n in nodes:
        if n.op == "output":
            for a in _tensor_nodes(n.args):
                if a in active:
                    last[(a, None)] = INF
            continue
        if n not in active or n.op == "placeholder":
            continue
        if kinds[n] == "piece":
            last[(n.args[0], n.args[1])] = max(last.get((n.args[0], n.args[1]), -INF), pos[n])
            continue
        srcs = [s for s, _ in mix[n]] if n in mix else _tensor_nodes((n.args, n.kwargs))
        for s in srcs:
            if s in active and s not in skipped:
                last[(s, None)] = max(last.get((s, None), -INF), pos[n])

    buffers: list[Buffer] = []
    values: dict[Any, list[tuple[int, Hashable | None]]] = {}
    start: list[int] = []
    cover: list[list[tuple[int, float, Hashable | None]]] = []  # per buffer: (from, to, key)
    step_nodes: list[fx.Node] = []
    reads: dict[fx.Node, set[int]] = {}
    writes: dict[fx.Node, set[int]] = {}

    def new_buffer(node: fx.Node, piece: int | None, numel: int, key: Hashable | None) -> int:
        buffers.append(Buffer(node, piece, numel, key))
        start.append(pos[node] if node.op != "placeholder" else -1)
        cover.append([])
        return len(buffers) - 1

    def bind(value: Any, node: fx.Node, refs: list[tuple[int, Hashable | None]]) -> None:
        values[value] = refs
        end = last.get(value)
        if end is None:
            return
        begin = pos[node] if node.op != "placeholder" else -1
        for b, k in refs:
            cover[b].append((begin, end, k))

    def end_of(b: int) -> float:
        return max((to for _, to, _ in cover[b]), default=-INF)

    keyf = key_of or (lambda n: None)
    for n in nodes:
        if n not in active:
            continue
        shape = shapes[n]
        if n.op == "placeholder":
            if isinstance(shape, list):
                for i, s in enumerate(shape):
                    bind((n, i), n, [(new_buffer(n, i, math.prod(s), None), None)])
            else:
                bind((n, None), n, [(new_buffer(n, None, math.prod(shape), None), None)])
            continue
        kind = kinds[n]
        srcs = [s for s in _tensor_nodes((n.args, n.kwargs)) if s in active]
        if kind == "piece":
            bind((n, None), n, values.get((n.args[0], n.args[1]), []))
            continue
        if kind == "alias":
            bind((n, None), n, list(values.get((srcs[0], None), [])))
            continue
        if kind == "mix":
            refs: list[tuple[int, Hashable | None]] = []
            for s, k in mix[n]:
                if s in active and s not in skipped:
                    refs += [(b, k if kb is None else kb if k is None else combine(kb, k))
                             for b, kb in values[(s, None)]]  # fmt: skip
            bind((n, None), n, refs)
            continue
        step_nodes.append(n)
        reads[n] = {b for s in srcs for b, _ in values.get((s, None), [])}
        key = keyf(n)
        src = next((s for s in srcs if shapes.get(s) == shape and (s, None) in values), None)
        if kind == "inplace" and src is not None:
            keep, fresh = [], []
            for b, k in values[(src, None)]:
                (keep if end_of(b) <= pos[n] else fresh).append((b, k))
            refs = list(keep)
            if fresh:
                k_new = None if any(k is None for _, k in fresh) else fresh[0][1]
                refs.append((new_buffer(n, None, math.prod(shape), k_new), k_new))
            writes[n] = {b for b, _ in refs}
            bind((n, None), n, refs)
            continue
        if isinstance(shape, list):  # a tuple of tensors: one buffer per piece
            made = [new_buffer(n, i, math.prod(s), key) for i, s in enumerate(shape)]
            for i, b in enumerate(made):
                bind((n, i), n, [(b, key)])
            writes[n] = set(made)
        else:
            b = new_buffer(n, None, math.prod(shape), key)
            bind((n, None), n, [(b, key)])
            writes[n] = {b}

    steps = []
    for n in step_nodes:
        p = pos[n]
        live: dict[int, Hashable | None] = {}
        ends = set()
        for b in range(len(buffers)):
            if start[b] > p:
                continue
            keys = [k for lo, hi, k in cover[b] if lo <= p <= hi]
            if not keys:
                continue
            live[b] = None if any(k is None for k in keys) else keys[0]
            if end_of(b) == p:
                ends.add(b)
        steps.append(Step(n, live, reads[n] & set(live), writes[n] & set(live), ends))
    return Liveness(buffers, steps, values)
