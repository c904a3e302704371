"""The search engine: a converted network plus its architecture parameters, regulariser and
export. The methods (PIT, SuperNet, PITSuperNet) are presets of :class:`DNAS` in
:mod:`lightning_dnas.nas.methods`; the costs are :mod:`lightning_dnas.nas.costing`.

Pipeline of the constructor: deep copy -> trace (torch.fx, SuperNetModules expanded when
choices are searched) -> shape propagation -> channel analysis (groups) -> search network
(masked layers swapped in place, masks folded into parameters) -> cost tables.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from .cost.models import CostModel, resolve_costs
from .costing import SearchCosts
from .equivalence import assert_same_function
from .graph.analyse import analyse
from .graph.channel_graph import ChannelGraph, LayerCall
from .graph.channel_layout import Layout
from .graph.cuts import cut_widths
from .graph.ops import op_name
from .graph.trace import as_tuple, propagate_shapes, trace
from .pit.convert import build_search_network, searchable_taps
from .pit.layers import FoldedLayer, unwrap_masked
from .pit.masks import MaskBank, TapMask
from .selectors import Selector, matches, parse_selectors
from .spec import FORMAT, apply_arch
from .supernet.module import SuperNetModule, icv_loss, set_softmax, set_temperature
from .supernet.trace import supernet_tracing


class DNAS(SearchCosts, nn.Module):
    """A converted network with PIT masks and/or SuperNet choices: the common engine of
    :class:`PIT`, :class:`SuperNet` and :class:`PITSuperNet` (use those presets).

    The network is a deep copy of ``model`` (the original is untouched) in which layers are
    swapped for masked versions in place, so it keeps the user's class and forward; calling
    the wrapper runs it. Channel groups, costs and export come from a torch.fx analysis of
    the network (SuperNetModules traced through when ``search_choices``).
    """

    method = "dnas"
    costs: dict[str, CostModel]

    def __init__(
        self,
        model: nn.Module,
        example_input: Any,
        cost: Any = "params",
        include: Selector | Iterable[Selector] | None = None,
        exclude: Selector | Iterable[Selector] | None = None,
        train_channels: bool = True,
        train_rf: bool = True,
        train_dilation: bool = True,
        leaf_modules: Iterable[Selector] = (),
        search_choices: bool = False,
        softmax: str | None = None,
        temperature: float | None = None,
        sampled_cost: bool = False,
    ) -> None:
        super().__init__()
        self.costs = resolve_costs(cost)
        includes, excludes = parse_selectors(include), parse_selectors(exclude)
        leaves = parse_selectors(leaf_modules)
        net = copy.deepcopy(model)
        net.train(model.training)

        def searchable(name: str, module: nn.Module) -> bool:
            if includes and not matches(name, module, includes):
                return False
            return not matches(name, module, excludes)

        self.choices = _choices(net) if search_choices else {}
        if search_choices and not self.choices:
            raise ValueError(
                f"{type(model).__name__} has no SuperNetModule: place choices with "
                "lightning_dnas.SuperNetModule([...]) or use PIT for a plain network"
            )
        leaf_types = [s for s in leaves if isinstance(s, type)]
        leaf_names = [n for n, m in net.named_modules() if n and matches(n, m, leaves)]
        choice_leaves, expanders = supernet_tracing(search_choices)
        gm = trace(net, [*leaf_types, *choice_leaves], leaf_names, expanders)
        propagate_shapes(gm, example_input)
        cg = analyse(gm, net, searchable)
        if not train_channels:
            cg.frozen.update(cg.root(g) for g in cg.parent)
        tap_masks: dict[str, TapMask] = {}
        if train_rf or train_dilation:
            for lc in cg.layers:
                if not lc.name:
                    continue  # the root layer (the network is one Conv1d): no parent to swap into
                if lc.name not in tap_masks and searchable_taps(lc.module) and searchable(
                    lc.name, lc.module
                ):
                    tap_masks[lc.name] = TapMask(lc.module.kernel_size[0], train_rf,
                                                 train_dilation)  # fmt: skip
        plan = build_search_network(net, gm, cg, tap_masks)
        if train_channels:
            _warn_frozen(cg)
        self.net = net
        # Keyed by the first layer writing the group ("stack1/conv"): readable in logs.
        owner = _mask_keys(cg)
        self.channel_masks = nn.ModuleDict({owner[root]: m for root, m in plan.masks.items()})
        self._group_masks = plan.masks  # by group root; the same modules as channel_masks
        folded = [m for m in net.modules() if isinstance(m, FoldedLayer) and m.fold_mask]
        self._bank = MaskBank(list(plan.masks.values()), folded)
        self._bank_hook = net.register_forward_pre_hook(self._bank).id
        self.tap_masks = nn.ModuleDict({_key(k): m for k, m in plan.taps.items()})
        self._taps = plan.taps  # by layer name; the same modules as tap_masks
        self._graph = cg
        self._norms = plan.norms
        self._sliced_tensors = plan.parameters  # (not `_parameters`: nn.Module's own)
        self._example = tuple(t.detach().clone() if isinstance(t, Tensor) else t
                              for t in as_tuple(example_input))  # fmt: skip
        first: dict[str, LayerCall] = {}
        for lc in cg.layers:
            first.setdefault(lc.name, lc)
        self._calls = cg.layers
        self._first_calls = list(first.values())
        self._owners = {lc.name: self._owner(lc.name) for lc in cg.layers}
        self._fast = self._linear_counts()
        if softmax is not None:
            set_softmax(self.net, softmax)
        if temperature is not None:
            set_temperature(self.net, temperature)
        self.sampled_cost = sampled_cost
        self.train()

    # -- running --------------------------------------------------------------------------
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Run the search network (masked layers; choices mix their candidates)."""
        return self.net(*args, **kwargs)

    def nas_parameters(self) -> Iterator[nn.Parameter]:
        """Trainable architecture parameters: channel ``alpha``, tap ``beta``/``gamma`` and
        the choices' logits."""
        yield from self.channel_masks.parameters()
        yield from self.tap_masks.parameters()
        for choice in self.choices.values():
            if choice.alpha.requires_grad:
                yield choice.alpha

    def net_parameters(self) -> Iterator[nn.Parameter]:
        """Trainable network weights (everything but the architecture parameters)."""
        alphas = {id(c.alpha) for c in self.choices.values()}
        yield from (p for p in self.net.parameters() if p.requires_grad and id(p) not in alphas)

    def set_softmax(self, mode: str) -> None:
        """Set the combiner mode of every choice."""
        set_softmax(self.net, mode)

    def set_temperature(self, temperature: float) -> None:
        """Set the temperature of every choice (anneal with ``temperature_schedule``)."""
        set_temperature(self.net, temperature)

    def icv(self, eps: float = 1e-3) -> Tensor:
        """ICV polarisation loss ``sum_m mean(p_m)^2 / (var(p_m) + eps)`` (0 without choices)."""
        return icv_loss(self.net, eps=eps, sampled=self.sampled_cost)

    def regularizer(
        self,
        strength: float | Mapping[str, float],
        target: float | Mapping[str, float] | None = None,
        costs: Mapping[str, Tensor] | None = None,
    ) -> Tensor:
        """``sum_n lambda_n * R_n`` with ``R_n = cost_n`` or, when a target (budget) is given,
        the hinge ``max(0, cost_n - target_n)``.

        ``strength`` is one lambda for the first cost or a ``{cost name: lambda}`` dict;
        ``target`` likewise. ``costs``: soft costs the caller already computed
        (``{name: soft_cost(name)}``, e.g. to log them), used instead of computing them again.
        """
        first = self._cost_name(None)
        lambdas = {first: float(strength)} if not isinstance(strength, Mapping) else strength
        targets: Mapping[str, float] = (
            {} if target is None else {first: float(target)}
            if not isinstance(target, Mapping) else target
        )  # fmt: skip
        if not lambdas:
            raise ValueError(f"strength names no cost; give a number or {{name: lambda}} "
                             f"for the costs {list(self.costs)}")  # fmt: skip
        unknown = (set(lambdas) | set(targets)) - set(self.costs)
        if unknown:
            raise KeyError(f"unknown cost(s) {sorted(unknown)}; costs are {list(self.costs)}")
        total: Tensor = 0.0  # type: ignore[assignment]  # a tensor after the first term
        for name, lam in lambdas.items():
            cost = costs[name] if costs is not None and name in costs else self.soft_cost(name)
            if name in targets:
                cost = torch.relu(cost - targets[name])
            total = total + lam * cost
        return total

    # -- architecture ---------------------------------------------------------------------
    def _kept(self, layout: Layout | None) -> list[int] | None:
        if layout is None or not self._graph.searchable(layout):
            return None
        kept: list[int] = []
        offset = 0
        for s in layout.segments:
            if self._graph.is_frozen(s.group):
                channels = range(s.size)
            else:
                unit = self._graph.unit(s.group)
                channels = [e * unit + u for e in self._mask(s.group).kept().tolist()
                            for u in range(unit)]  # fmt: skip
            for c in channels:
                kept.extend(range(offset + c * s.rep, offset + (c + 1) * s.rep))
            offset += s.size * s.rep
        return None if len(kept) == layout.width else kept

    def _exported(self, name: str) -> bool:
        owner = self._owner(name)
        return owner is None or self.choices[owner[0]].argmax() == owner[1]

    def arch(self) -> dict[str, Any]:
        """The found architecture as JSON-able data (see :mod:`lightning_dnas.nas.spec`)."""
        modules: dict[str, Any] = {}
        for lc in self._first_calls:
            if not self._exported(lc.name):
                continue
            entry = self._layer_entry(lc)
            if entry["out"] is not None or entry["in"] is not None or entry.get("taps"):
                modules[lc.name] = entry
        for name, layout in self._norms.items():
            keep = self._kept(layout)
            if keep is not None and self._exported(name):
                wrapper = self.net.get_submodule(name)
                norm = getattr(wrapper, "layer", wrapper)  # a channel PReLU is not wrapped
                modules[name] = {"type": type(norm).__name__, "keep": keep,
                                 "num_features": len(keep)}  # fmt: skip
        chosen = {n: {"index": c.argmax(), "name": c.names[c.argmax()]}
                  for n, c in self.choices.items()}  # fmt: skip
        spec = {"format": FORMAT, "method": self.method, "choices": chosen, "modules": modules}
        parameters = self._parameter_entries()
        if parameters:
            spec["parameters"] = parameters
        # Explicit split sizes held by a module attribute: the kept width of each piece.
        sizes = {}
        for name, pieces in self._graph.split_sizes.items():
            kept = [p.width if (k := self._kept(p)) is None else len(k) for p in pieces]
            if self._exported(name) and kept != [p.width for p in pieces]:
                sizes[name] = kept
        if sizes:
            spec["sizes"] = sizes
        cuts = self._cut_entries()
        if cuts:
            spec["cuts"] = cuts
        return spec

    def _cut_entries(self) -> dict[str, list[dict[str, Any]]]:
        """Cuts at constant positions whose constants no longer cut the kept pieces, by module."""
        entries: dict[str, list[dict[str, Any]]] = {}
        for (owner, call), site in self._graph.cuts.items():
            kept = [p.width if (k := self._kept(p)) is None else len(k) for p in site.pieces]
            if self._exported(owner) and cut_widths(site.node, sum(kept), site.entry) != kept:
                entries.setdefault(owner, []).append(
                    {"call": call, "op": op_name(site.node), "node": site.node.name,
                     "widths": site.widths, "kept": kept}
                    | ({} if site.entry is None else {"entry": site.entry}))  # fmt: skip
        return entries

    def _parameter_entries(self) -> dict[str, Any]:
        """Per-channel parameters read directly by the forward, with their kept channels."""
        entries: dict[str, Any] = {}
        for name, (dim, layout) in self._sliced_tensors.items():
            keep = self._kept(layout)
            if keep is not None and self._exported(name):
                owner, _, leaf = name.rpartition(".")
                shape = list(getattr(self.net.get_submodule(owner), leaf).shape)
                entries[name] = {"dim": dim, "keep": keep, "shape": shape}
        return entries

    def layer_widths(self) -> list[dict[str, Any]]:
        """One row per convolution and linear layer the export keeps (first call of each,
        as :meth:`arch`): ``layer``, ``type``, kept ``out_channels`` and the ``original``
        width, kept ``taps`` and the original ``kernel`` (first spatial dimension; 1 for a
        Linear), and the exported ``dilation`` (likewise)."""
        rows = []
        for lc in self._first_calls:
            if not self._exported(lc.name):
                continue
            mod = lc.module
            entry = self._layer_entry(lc)
            linear = isinstance(mod, nn.Linear)
            rows.append({
                "layer": lc.name, "type": entry["type"], "out_channels": entry["out_channels"],
                "original": mod.out_features if linear else mod.out_channels,
                "taps": 1 if linear else entry["kernel_size"][0],
                "kernel": 1 if linear else mod.kernel_size[0],
                "dilation": 1 if linear else entry["dilation"][0],
            })  # fmt: skip
        return rows

    def _layer_entry(self, lc: LayerCall) -> dict[str, Any]:
        mod = lc.module
        out = self._kept(lc.out_layout)
        entry: dict[str, Any] = {"type": type(mod).__name__, "out": out}
        entry["in"] = out if lc.kind in ("depthwise", "grouped") else self._kept(lc.in_layout)
        width = mod.out_features if isinstance(mod, nn.Linear) else mod.out_channels
        entry["out_channels"] = width if out is None else len(out)
        if not isinstance(mod, nn.Linear):
            taps = self._taps[lc.name].kept_taps() if lc.name in self._taps else None
            if taps is not None and len(taps) == mod.kernel_size[0]:
                taps = None
            entry["taps"] = taps
            entry["kernel_size"] = list(mod.kernel_size) if taps is None else [len(taps)]
            entry["dilation"] = (list(mod.dilation) if taps is None or len(taps) < 2
                                 else [(taps[1] - taps[0]) * mod.dilation[0]])  # fmt: skip
        return entry

    def export(self, check: bool = True) -> nn.Module:
        """The found network as a plain module: a copy of the network (the user's own class)
        with each searched layer replaced by its trained, sliced copy and each choice by its
        argmax candidate.

        With ``check`` the exported network and the search network (eval mode, choices
        running their argmax candidate) are run on the example input and must agree (max
        abs difference <= 1e-5 of the output scale); else a RuntimeError is raised instead
        of returning a wrong network.
        """
        plain = unwrap_masked(copy.deepcopy(self.net))
        plain._forward_pre_hooks.pop(self._bank_hook, None)
        exported = apply_arch(plain, self.arch())
        if check:
            modes = {n: c.eval_mode for n, c in self.choices.items()}
            try:
                for c in self.choices.values():
                    c.eval_mode = "argmax"
                assert_same_function(self, exported, self._example)
            finally:
                for n, c in self.choices.items():
                    c.eval_mode = modes[n]
        return exported


def _choices(net: nn.Module) -> dict[str, SuperNetModule]:
    found = {n: m for n, m in net.named_modules() if isinstance(m, SuperNetModule)}
    for name, choice in found.items():
        if not name:
            raise ValueError("the network itself is a SuperNetModule: wrap it in a module")
        nested = [n for n, m in choice.candidates.named_modules()
                  if n and isinstance(m, SuperNetModule)]  # fmt: skip
        if nested:
            raise ValueError(f"SuperNetModule `{name}` contains another choice "
                             f"(`{name}.candidates.{nested[0]}`); nesting is not supported")
    return found


def _mask_keys(cg: ChannelGraph) -> dict[int, str]:
    """A name per group root: the first layer writing it, with ``:i`` when it is the i-th
    segment of that layer's output (a layer whose output a chunk cut in pieces)."""
    keys: dict[int, str] = {}
    for lc in cg.layers:
        for i, seg in enumerate(lc.out_layout.segments):
            keys.setdefault(cg.root(seg.group), _key(lc.name) + (f":{i}" if i else ""))
    return keys


def _warn_frozen(cg: ChannelGraph) -> None:
    """One warning per conversion (a large network can freeze dozens of places, and one
    warning each buried the rest of the output), listing each freeze event that froze a
    layer's channels on its own line (``<reason> is not searchable; the output channels of
    <layers> are kept whole``) and the fixes; groups kept whole anyway (reaching the graph
    output, an excluded layer) are not named."""
    silent = {cg.root(g) for g in cg.frozen_silently}
    producers: dict[int, list[str]] = {}
    for lc in cg.layers:
        for s in lc.out_layout.segments:
            producers.setdefault(cg.root(s.group), []).append(lc.name)
    lines, kept = [], set()
    for reason, groups in cg.freeze_events:
        roots = {cg.root(g) for g in groups} - silent
        layers = sorted({n for r in roots for n in producers.get(r, [])})
        if layers:
            kept.update(layers)
            lines.append(f"  - {reason} is not searchable; the output channels of "
                         f"{', '.join(layers)} are kept whole")  # fmt: skip
    if not lines:
        return
    names = ", ".join(repr(n) for n in sorted(kept))
    warnings.warn(
        f"lightning_dnas: {len(lines)} place(s) of the network are not searchable (the rest "
        "is searched):\n" + "\n".join(lines) + "\nTo search these channels, change the "
        "forward so that they pass only through operations the converter follows (see "
        "docs/COVERAGE.md); to keep them whole without this warning, exclude their layers: "
        f"converter={{'exclude': [{names}]}} (DNASCallback) or exclude=[{names}] (PIT, "
        "SuperNet); a module that cannot be traced or followed can be made one opaque "
        "call, its channels kept whole: converter={'leaf_modules': ['<module name>']}",
        stacklevel=4,
    )


def _key(name: str) -> str:
    return name.replace(".", "/")
