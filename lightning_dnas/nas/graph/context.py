"""The state of one channel analysis, shared by the rules, and the helpers they all use."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import fx, nn

from .channel_graph import ChannelGraph
from .channel_layout import Layout
from .cuts import own_call_index, own_calls, own_graph
from .groups import GroupTable
from .ops import calling_module, nodes_in, shape_of


class Analysis:
    """One analysis of ``gm`` (traced from ``root``): the graph being built, its groups and
    what the rules remember between nodes."""

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
        self.groups = GroupTable(self.g)
        # Layers: the output layout of each Conv/Linear, the input of its last call.
        self.producer_layout: dict[str, Layout] = {}
        self.layer_inputs: dict[str, Layout | None] = {}
        # Field names of the namedtuples built in the graph.
        self.fields: dict[fx.Node, tuple[str, ...]] = {}
        # The elementwise ops reading a per-channel parameter, and the modules owning a
        # functional layer norm that could not be searched (their weights stay whole).
        self.parameter_uses: set[fx.Node] = set()
        self.whole_norms: set[str] = set()
        # Values read from the shape of a tensor with channels: (its layout, whether the
        # value is the whole shape rather than the channel count itself).
        self.sizes: dict[fx.Node, tuple[Layout, bool]] = {}
        # The calls of each module's own forward traced alone (None: it does not trace).
        self.own_code: dict[str, list[fx.Node] | None] = {}

    def cut_site(self, node: fx.Node, width: int, entry: int | None) -> tuple[str, int] | None:
        """Where the export finds the cut ``node`` of a dim of ``width`` again: (path of the
        module whose own forward makes it, position among that forward's calls), or None
        when that module's forward traced alone does not make the same calls."""
        owner = calling_module(node)
        if owner not in self.own_code:
            try:
                self.own_code[owner] = own_calls(own_graph(self.modules[owner]).nodes)
            except Exception:  # fx raises TraceError, TypeError...: not rewritable
                self.own_code[owner] = None
        alone = self.own_code[owner]
        index = own_call_index(node, alone, width, entry) if alone is not None else None
        return None if index is None else (owner, index)

    def layout(self, arg: Any) -> Layout | None:
        """Current layout of ``arg`` (None for an untracked value or a non-node)."""
        return self.groups.expand(self.g.layouts.get(arg)) if isinstance(arg, fx.Node) else None

    def tracked(self, arg: Any) -> list[Layout]:
        """Layouts carried by ``arg``: its own, or those of the pieces of a tuple value."""
        if not isinstance(arg, fx.Node):
            return []
        own = self.layout(arg)
        pieces = [self.groups.expand(p) for p in self.g.pieces.get(arg, ()) if p is not None]
        return ([own] if own is not None else []) + pieces

    def freeze_inputs(self, node: fx.Node, what: str) -> Layout | None:
        """Freeze every group flowing into ``node`` (one warning) and give its output, if a
        tensor, a new frozen group on the channel dim of its input (when the rank is kept:
        a channels-last op stays channels-last), else on dim 1."""
        inputs = [lay for a in nodes_in((node.args, node.kwargs)) for lay in self.tracked(a)]
        if inputs:
            merged = Layout(inputs[0].dim, tuple(s for lay in inputs for s in lay.segments))
            self.groups.freeze(merged, f"`{node.name}` ({what})")  # one warning for all inputs
        out = shape_of(node)
        if out is None or len(out) < 2:
            return None
        dim = 1
        for a in nodes_in((node.args, node.kwargs)):
            lay, shape = self.layout(a), shape_of(a)
            if lay is not None and shape is not None:
                dim = lay.dim if len(shape) == len(out) else 1
                break
        return self.groups.fresh(dim, out[dim])

    def unknown_function(self, node: fx.Node, name: str) -> Layout | None:
        """A function no rule understands: its inputs are kept whole."""
        if self.layout(node.args[0] if node.args else None) is None and not any(
                self.tracked(a) for a in nodes_in((node.args, node.kwargs))):  # fmt: skip
            # Made without searched channels (a constant, ``class_token.expand(n, -1, -1)``):
            # untracked; where it meets searched channels, binary/cat name the reason.
            return None
        return self.freeze_inputs(node, name)

    def unknown_module(self, node: fx.Node, module: nn.Module) -> Layout | None:
        """A module no rule understands: its inputs are kept whole."""
        return self.freeze_inputs(node, f"module {type(module).__name__}")

    def companion(self, node: fx.Node, target: str, layout: Layout) -> None:
        """Record a module sliced on export with ``layout``; a module called twice has one
        set of parameters, so its calls must keep the same channels."""
        for _n, other, known in self.g.companions:
            if other == target:
                self.groups.merge([self.groups.expand(known), layout.with_dim(known.dim)],
                                  f"`{node.name}` (shared module inputs differ)")  # fmt: skip
                break
        self.g.companions.append((node, target, layout))
