"""Cuts of the channel dim at constant positions, and the forward rewrite that moves them.

A *cut* is a call that cuts one dim of a tensor into consecutive pieces at positions its
constant arguments fix: ``y[:, a:b]`` and ``y.narrow(1, a, b - a)`` (pieces ``[0, a)``,
``[a, b)``, ``[b, C)``; the result is the middle one), ``torch.split(y, [8, 8], 1)``,
``split(y, 8, 1)``, ``chunk(y, n, 1)`` and ``tensor_split(y, ..., 1)`` (every piece a
result). :func:`cut_widths` reads the pieces' widths from a node's constants. Once channels
are pruned the user's forward would still cut at the old positions, so the export rewrites
the call: :func:`rewrite_forward` traces the module whose own forward makes it (every
submodule kept as one call) into a ``torch.fx.GraphModule`` in which :func:`recut` has set
the constants to the kept width of each piece (``split`` of the kept sizes for the
split-like calls, the slice / narrow bounds moved).

A cut is found again in a fresh module by its position among the calls of the module's
own code (:func:`own_calls`), which :func:`own_call_index` checks to be the same in the
analysed network and in the module traced alone.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
from torch import fx, nn

from .ops import arg, op_name

CUT_OPS = ("getitem", "narrow", "split", "chunk", "tensor_split")


def _ints(values: Any) -> list[int] | None:
    if isinstance(values, (list, tuple)) and all(type(v) is int for v in values):
        return list(values)
    return None


def _sections(node: fx.Node, name: str) -> Any:
    keyword = {"chunk": "chunks", "split": "split_size_or_sections"}.get(
        name, "indices_or_sections")  # fmt: skip
    return arg(node, 1, keyword, node.kwargs.get("split_size", node.kwargs.get("sections",
                                                  node.kwargs.get("indices"))))  # fmt: skip


def _pieces_of(size: int, width: int) -> list[int]:
    """``torch.split(y, size)`` of ``width``: pieces of ``size``, the last what remains."""
    return [size] * (width // size) + ([width % size] if width % size else [])


def cut_widths(node: fx.Node, width: int, entry: int | None = None) -> list[int] | None:
    """Widths of the consecutive pieces that ``node``'s constant arguments cut a dim of
    ``width`` into (they add up to ``width``): ``[a, b - a, width - b]`` for ``y[..., a:b]``
    (``entry``: the position of that slice in the index tuple) and for a narrow, the pieces
    for split/chunk/tensor_split (``chunk(n)``: pieces of ``ceil(width / n)``; int
    ``tensor_split(n)``: the first ``width % n`` one wider). None for anything else
    (a computed, negative or stepped bound, decreasing indices, ``unbind``)."""
    name = op_name(node)
    if name == "getitem":
        index = node.args[1]
        if not isinstance(index, tuple) or entry is None or entry >= len(index):
            return None
        cut = index[entry]
        bounds = (cut.start, cut.stop) if isinstance(cut, slice) else (-1, -1)
        if not all(b is None or (type(b) is int and b >= 0) for b in bounds) or getattr(
                cut, "step", None) not in (None, 1):  # fmt: skip
            return None
        start = min(cut.start or 0, width)
        stop = width if cut.stop is None else min(cut.stop, width)
        return [start, stop - start, width - stop] if start <= stop else None
    if name == "narrow":
        start, length = arg(node, 2, "start"), arg(node, 3, "length")
        if type(start) is not int or type(length) is not int or start < 0 or length < 0:
            return None
        return [start, length, width - start - length] if start + length <= width else None
    sections = _sections(node, name) if name in ("split", "chunk", "tensor_split") else None
    if name == "split":
        if type(sections) is int and sections > 0:
            return _pieces_of(sections, width)
        sizes = _ints(sections)
        return sizes if sizes is not None and sum(sizes) == width else None
    if name == "chunk" and type(sections) is int and sections > 0:
        return _pieces_of(-(-width // sections), width) if width else None
    if name == "tensor_split":
        if type(sections) is int and sections > 0:
            small, wide = divmod(width, sections)
            return [small + 1] * wide + [small] * (sections - wide)
        indices = _ints(sections)
        if indices is None or any(i < 0 for i in indices) or indices != sorted(indices):
            return None
        ends = [0, *(min(i, width) for i in indices), width]
        return [b - a for a, b in itertools.pairwise(ends)]
    return None


def recut(node: fx.Node, kept: list[int], entry: int | None = None) -> None:
    """Change ``node``'s constants so that it cuts a dim of ``sum(kept)`` into pieces of
    ``kept`` (:func:`cut_widths` of the node then gives ``kept``): a slice or narrow gets
    the bounds of its middle piece, a split-like call becomes ``torch.split(y, kept, dim)``
    (the method ``y.split`` for a method call)."""
    name = op_name(node)
    if name == "getitem":
        index = list(node.args[1])
        stop = None if kept[2] == 0 else kept[0] + kept[1]
        index[entry] = slice(kept[0], stop)  # type: ignore[index]  # a getitem cut has one
        node.args = (node.args[0], tuple(index))
    elif name == "narrow":
        node.args = (node.args[0], arg(node, 1, "dim"), kept[0], kept[1])
        node.kwargs = {}
    else:
        dim = arg(node, 2, "dim", 0)
        node.target = torch.split if node.op == "call_function" else "split"
        node.args, node.kwargs = (node.args[0], list(kept), dim), {}


class _OwnCode(fx.Tracer):
    """Traces one module's own forward: every submodule is one opaque call."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return True


def own_graph(module: nn.Module) -> fx.Graph:
    """The graph of ``module``'s own forward, each submodule one call; raises what fx
    raises."""
    return _OwnCode().trace(module)


def own_forward(module: nn.Module) -> fx.GraphModule:
    """``module``'s own forward as a GraphModule of the same class name holding the
    module's own children (a ModuleList stays one, each called, not traced through),
    parameters and buffers under the same names, so its ``state_dict`` has the module's
    keys; raises what fx raises."""
    gm = fx.GraphModule(module, own_graph(module), type(module).__name__)
    for name, child in module.named_children():
        setattr(gm, name, child)  # GraphModule copies only the called ones, as nn.Modules
    for name, param in module.named_parameters(recurse=False):
        gm.register_parameter(name, param)
    for name, buffer in module.named_buffers(recurse=False):
        gm.__dict__.pop(name, None)  # copied as a plain attribute when the forward reads it
        gm.register_buffer(name, buffer,
                           persistent=name not in module._non_persistent_buffers_set)  # fmt: skip
    gm.train(module.training)
    return gm


def own_calls(nodes: Any, key: str | None = None) -> list[fx.Node]:
    """The function and method calls among ``nodes`` made by one module's own code: those
    whose innermost module call (``nn_module_stack`` key, ``"blocks.1@1"`` for a second call)
    is ``key``, or every one when ``key`` is None (a module traced alone by
    :func:`own_forward`)."""
    calls = [n for n in nodes if n.op in ("call_function", "call_method")]
    if key is None:
        return calls
    return [n for n in calls if call_key(n) == key]


def call_key(node: fx.Node) -> str:
    """Key of the innermost module call that made ``node`` (``""`` at the top level)."""
    stack = node.meta.get("nn_module_stack") or {}
    return next(reversed(stack.keys())) if stack else ""


def own_call_index(node: fx.Node, alone: list[fx.Node], width: int,
                   entry: int | None) -> int | None:  # fmt: skip
    """Position of the cut ``node`` (of the analysed network's graph) among the calls of
    its module's own code, provided the module traced alone (``alone``: its
    :func:`own_calls`) makes the same calls in the same order and cuts the same widths
    there: else None (a forward whose graph depends on how it is called)."""
    mine = own_calls(node.graph.nodes, call_key(node))
    if [(n.op, n.target) for n in mine] != [(n.op, n.target) for n in alone]:
        return None
    index = mine.index(node)
    same = cut_widths(alone[index], width, entry) == cut_widths(node, width, entry)
    return index if same else None


def rewrite_forward(module: nn.Module, cuts: list[dict[str, Any]], name: str) -> fx.GraphModule:
    """``module`` (dotted path ``name``, for errors) as a GraphModule of its own forward
    with each cut of ``cuts`` (``{"call": position among its own calls, "op", "widths",
    "kept", "entry"}``, from the architecture spec) moved to the kept widths. A ValueError
    when a cut is not where the spec says (a spec made for another network)."""
    gm = own_forward(module)
    calls = own_calls(gm.graph.nodes)
    for cut in cuts:
        at, entry = cut["call"], cut.get("entry")
        node = calls[at] if at < len(calls) else None
        if node is None or op_name(node) != cut["op"] or cut_widths(
                node, sum(cut["widths"]), entry) != cut["widths"]:  # fmt: skip
            raise ValueError(
                f"the architecture cuts the channels of call {at} ({cut['op']}, pieces "
                f"{cut['widths']}) of `{name or type(module).__name__}`'s forward, but that "
                "forward makes no such call there: was the spec made for another seed network?"
            )
        recut(node, cut["kept"], entry)
    gm.recompile()
    return gm
