"""The search wrappers: a converted network plus its architecture parameters and costs."""

from __future__ import annotations

import copy
import fnmatch
import math
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .arch import FORMAT, apply_arch, set_submodule
from .cost.fast import FAST_COSTS, LinearCounts
from .cost.models import CostModel, LayerShape, as_tensor, resolve_costs
from .graph.channels import ChannelGraph, LayerCall, Layout, analyse
from .graph.trace import as_tuple, propagate_shapes, trace
from .pit.convert import build_search_network, searchable_taps
from .pit.layers import MaskedBatchNorm, MaskedConv, MaskedLayerNorm, MaskedLinear
from .pit.masks import THRESHOLD, MaskBank, TapMask
from .supernet.module import SuperNetModule, icv_loss, set_softmax, set_temperature

Selector = str | type


def _matches(name: str, module: nn.Module, selectors: Sequence[Selector]) -> bool:
    for sel in selectors:
        if isinstance(sel, type) and isinstance(module, sel):
            return True
        if isinstance(sel, str) and fnmatch.fnmatchcase(name, sel):
            return True
    return False


def _selectors(value: Selector | Iterable[Selector] | None) -> list[Selector]:
    if value is None:
        return []
    if isinstance(value, (str, type)):
        return [value]
    out = list(value)
    for sel in out:
        if not isinstance(sel, (str, type)):
            raise TypeError(f"include/exclude take module names (globs) or types, got {sel!r}")
    return out


class DNAS(nn.Module):
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
        includes, excludes = _selectors(include), _selectors(exclude)
        leaves = _selectors(leaf_modules)
        net = copy.deepcopy(model)
        net.train(model.training)

        def searchable(name: str, module: nn.Module) -> bool:
            if includes and not _matches(name, module, includes):
                return False
            return not _matches(name, module, excludes)

        self.choices = _choices(net) if search_choices else {}
        if search_choices and not self.choices:
            raise ValueError(
                f"{type(model).__name__} has no SuperNetModule: place choices with "
                "lightning_dnas.SuperNetModule([...]) or use PIT for a plain network"
            )
        leaf_types = [s for s in leaves if isinstance(s, type)]
        leaf_names = [n for n, m in net.named_modules() if n and _matches(n, m, leaves)]
        gm = trace(net, leaf_types, leaf_names, expand_choices=search_choices)
        propagate_shapes(gm, example_input)
        cg = analyse(gm, net, searchable)
        if not train_channels:
            cg.frozen.update(cg.root(g) for g in cg.parent)
        tap_masks: dict[str, TapMask] = {}
        if train_rf or train_dilation:
            for lc in cg.layers:
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
        bank = MaskBank(list(plan.masks.values()))
        self._bank_hook = net.register_forward_pre_hook(bank).id
        self.tap_masks = nn.ModuleDict({_key(k): m for k, m in plan.taps.items()})
        self._taps = plan.taps  # by layer name; the same modules as tap_masks
        self._graph = cg
        self._norms = plan.norms
        self._sliced_tensors = plan.parameters  # (not `_parameters`: nn.Module's own)
        self._example = tuple(
            t.detach().clone() if isinstance(t, Tensor) else t for t in as_tuple(example_input)
        )
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

    def _cost_name(self, name: str | None) -> str:
        if name is None:
            return next(iter(self.costs))
        if name not in self.costs:
            raise KeyError(f"unknown cost {name!r}; this search has costs {list(self.costs)}")
        return name

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

    # -- costs ----------------------------------------------------------------------------
    def _owner(self, name: str) -> tuple[str, int] | None:
        """(choice, candidate index) whose candidate contains layer ``name``, if any."""
        for choice_name, choice in self.choices.items():
            prefix = f"{choice_name}.candidates."
            if name.startswith(prefix):
                return choice_name, choice.names.index(name[len(prefix):].split(".")[0])
        return None

    def _linear_counts(self) -> LinearCounts:
        roots = {root: i for i, root in enumerate(self._group_masks)}
        owners: dict[Any, int] = {None: 0}
        for cname, choice in self.choices.items():
            for i in range(len(choice.names)):
                owners[(cname, i)] = len(owners)
        first = {id(lc) for lc in self._first_calls}

        def affine(layout: Layout | None, fixed: int) -> tuple[dict[int, float], float]:
            if layout is None:
                return {}, float(fixed)
            coefs: dict[int, float] = {}
            const = 0.0
            for seg in layout.segments:
                if self._graph.is_frozen(seg.group):
                    const += seg.size * seg.rep
                else:
                    r = roots[self._graph.root(seg.group)]
                    coefs[r] = coefs.get(r, 0.0) + seg.rep * self._graph.unit(seg.group)
            return coefs, const

        rows = []
        for lc in self._calls:
            mod = lc.module
            linear = isinstance(mod, nn.Linear)
            w_out, b_out = affine(lc.out_layout, mod.out_features if linear else mod.out_channels)
            w_in, b_in = affine(lc.in_layout, mod.in_features if linear else mod.in_channels)
            rows.append({
                "in": w_in, "out": w_out, "b_in": b_in, "b_out": b_out,
                "dense": lc.kind in ("conv", "linear"),
                "ipg": 1.0 if linear else mod.in_channels // mod.groups,
                "groups": 1.0 if linear else mod.groups,
                "k": 1.0 if linear else math.prod(mod.kernel_size),
                "bias": mod.bias is not None, "positions": lc.positions,
                "first": id(lc) in first, "owner": owners[self._owners[lc.name]],
                "taps": self._taps.get(lc.name),
            })  # fmt: skip
        masks = [(m._scale, m._offset) for m in self._group_masks.values()]
        return LinearCounts(masks, rows)

    def _mask(self, group: int) -> Any:
        return self._group_masks[self._graph.root(group)]

    def _count(self, layout: Layout | None, hard: bool, fixed: int) -> Any:
        if layout is None:
            return fixed
        total: Any = 0
        for s in layout.segments:
            if self._graph.is_frozen(s.group):
                total = total + s.size * s.rep
                continue
            theta = self._mask(s.group).theta()
            n = int((theta > THRESHOLD).sum()) if hard else theta.sum()
            total = total + n * (s.rep * self._graph.unit(s.group))
        return total

    def _kernel(self, lc: LayerCall, hard: bool) -> Any:
        if isinstance(lc.module, nn.Linear):
            return 1
        taps = self._taps.get(lc.name)
        if taps is None:
            return math.prod(lc.module.kernel_size)
        return len(taps.kept_taps()) if hard else taps.soft_taps()

    def _shape(self, lc: LayerCall, hard: bool) -> LayerShape:
        mod = lc.module
        linear = isinstance(mod, nn.Linear)
        cin = mod.in_features if linear else mod.in_channels
        cout = self._count(lc.out_layout, hard, mod.out_features if linear else mod.out_channels)
        groups: Any = 1 if linear else mod.groups
        if lc.kind in ("depthwise", "grouped"):
            cin = cout
            groups = cout / (mod.in_channels // mod.groups)  # whole groups are kept
        else:
            cin = self._count(lc.in_layout, hard, cin)
        return LayerShape(
            name=lc.name, module=mod, kind="conv" if lc.kind == "grouped" else lc.kind,
            in_channels=cin, out_channels=cout, kernel=self._kernel(lc, hard), groups=groups,
            bias=mod.bias is not None, positions=lc.positions,
        )  # fmt: skip

    def _layer_calls(self, model: CostModel) -> list[LayerCall]:
        return self._calls if model.per_call else self._first_calls

    def _weights(self, choice: SuperNetModule) -> Tensor:
        if self.sampled_cost:
            if choice.last_theta is None:
                raise RuntimeError("sampled_cost=True needs a forward before the cost")
            return choice.last_theta
        return choice.probabilities()

    def soft_cost(self, name: str | None = None) -> Tensor:
        """Differentiable cost: channel counts ``sum(theta)``, soft kernel sizes; each
        candidate's layers weighted by its choice's ``p = softmax(alpha / T)`` (expected
        cost; the last forward's theta with ``sampled_cost``)."""
        model = self.costs[self._cost_name(name)]
        ref = next(self.net.parameters())
        if callable(model.fn) and model.fn in FAST_COSTS:
            return self._fast_soft_cost(FAST_COSTS[model.fn], ref)
        total = ref.new_zeros(())
        per_candidate: dict[tuple[str, int], Tensor] = {}
        for lc in self._layer_calls(model):
            term = as_tensor(model(self._shape(lc, hard=False)), ref)
            owner = self._owners[lc.name]
            if owner is None:
                total = total + term
            else:
                per_candidate[owner] = per_candidate.get(owner, 0.0) + term
        for cname, choice in self.choices.items():
            costs = [per_candidate.get((cname, i), ref.new_zeros(()))
                     for i in range(len(choice.names))]  # fmt: skip
            total = total + (self._weights(choice) * torch.stack(costs)).sum()
        return total

    def _fast_soft_cost(self, kind: str, ref: Tensor) -> Tensor:
        masks = list(self._group_masks.values())
        alphas = torch.cat([m.alpha for m in masks]).abs() if masks else ref.new_zeros(0)
        weights = None
        if self.choices:
            probs = [self._weights(c) for c in self.choices.values()]
            weights = torch.cat([ref.new_ones(1), *probs])
        return self._fast.cost(alphas.to(ref.dtype), kind, weights)

    def hard_cost(self, name: str | None = None) -> float:
        """Exact cost of the binarized, argmax architecture (equals the exported network's)."""
        model = self.costs[self._cost_name(name)]
        chosen = {n: c.argmax() for n, c in self.choices.items()}
        total = 0.0
        for lc in self._layer_calls(model):
            owner = self._owners[lc.name]
            if owner is None or chosen[owner[0]] == owner[1]:
                total += float(model(self._shape(lc, hard=True)))
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
        """The found architecture as JSON-able data (see :mod:`lightning_dnas.nas.arch`)."""
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
        return spec

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
        plain = unwrap(copy.deepcopy(self.net))
        plain._forward_pre_hooks.pop(self._bank_hook, None)
        exported = apply_arch(plain, self.arch())
        if check:
            modes = {n: c.eval_mode for n, c in self.choices.items()}
            try:
                for c in self.choices.values():
                    c.eval_mode = "argmax"
                check_export(self, exported, self._example)
            finally:
                for n, c in self.choices.items():
                    c.eval_mode = modes[n]
        return exported


class PIT(DNAS):
    """PIT search of an unmodified network (SPEC sections 2-4).

    ``PIT(model, example_input, cost="params")`` gives every Conv/Linear output-channel
    group a mask (shared across residual adds, depthwise convs, concatenations, flattens)
    and every stride-1 Conv1d a receptive-field and a dilation mask. The wrapper is in
    training mode after construction.

    Args:
        model: the seed network (deep-copied; the original is left untouched).
        example_input: a tensor (or tuple of tensors) the network accepts, used for tracing
            shapes and to check the exported network.
        cost: ``"params"``, ``"macs"``, ``"macs_no_bias"``, a :class:`CostModel`, a function
            of :class:`LayerShape`, or a ``{name: cost}`` dict of several.
        include: if given, only these layers (names with globs, or types) are searched.
        exclude: layers kept whole (names with globs, or types); still counted in the cost.
            Their own output channels and kernel are not searched; their input channels
            follow their producer.
        train_channels, train_rf, train_dilation: which masks exist.
        leaf_modules: module types or names traced as opaque calls (their channels frozen).
    """

    method = "pit"

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
    ) -> None:
        super().__init__(model, example_input, cost, include, exclude, train_channels,
                         train_rf, train_dilation, leaf_modules)  # fmt: skip


class SuperNet(DNAS):
    """Coarse-grained search among the candidates of every :class:`SuperNetModule` of the
    network (SPEC section 5); everything else is kept as it is.

    ``soft_cost = sum(layers outside) + sum_m sum_i p_mi * cost(candidate_mi)`` with
    ``p_m = softmax(alpha_m / T)``; ``hard_cost`` counts the argmax candidates, which is
    what ``export()`` keeps.

    Args:
        model, example_input, cost: as for :class:`PIT`.
        softmax: if given, the mode of every choice (``"softmax"``, ``"gumbel"``,
            ``"hard_softmax"``, ``"hard_gumbel"``); else each keeps its own.
        temperature: if given, the temperature of every choice.
        sampled_cost: cost and ICV from the last forward's theta (the thesis' variant).
    """

    method = "supernet"

    def __init__(
        self,
        model: nn.Module,
        example_input: Any,
        cost: Any = "params",
        softmax: str | None = None,
        temperature: float | None = None,
        sampled_cost: bool = False,
        leaf_modules: Iterable[Selector] = (),
    ) -> None:
        super().__init__(model, example_input, cost, train_channels=False, train_rf=False,
                         train_dilation=False, leaf_modules=leaf_modules, search_choices=True,
                         softmax=softmax, temperature=temperature,
                         sampled_cost=sampled_cost)  # fmt: skip


class PITSuperNet(DNAS):
    """SuperNet choices and PIT masks searched together (SPEC section 1).

    Layers inside the candidates are converted too; all candidates' outputs (and, when a
    choice has an Identity candidate, the layer feeding it) share one output-channel mask.
    A candidate's cost is its current PIT cost, weighted by its choice's probability.

    Args: those of :class:`PIT` and :class:`SuperNet`.
    """

    method = "pitsupernet"

    def __init__(
        self,
        model: nn.Module,
        example_input: Any,
        cost: Any = "params",
        softmax: str | None = None,
        temperature: float | None = None,
        sampled_cost: bool = False,
        include: Selector | Iterable[Selector] | None = None,
        exclude: Selector | Iterable[Selector] | None = None,
        train_channels: bool = True,
        train_rf: bool = True,
        train_dilation: bool = True,
        leaf_modules: Iterable[Selector] = (),
    ) -> None:
        super().__init__(model, example_input, cost, include, exclude, train_channels,
                         train_rf, train_dilation, leaf_modules, search_choices=True,
                         softmax=softmax, temperature=temperature,
                         sampled_cost=sampled_cost)  # fmt: skip


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


def unwrap(net: nn.Module) -> nn.Module:
    """Replace every masked layer of ``net`` by the plain layer it wraps (in place)."""
    for name, module in list(net.named_modules()):
        if isinstance(module, (MaskedConv, MaskedLinear, MaskedBatchNorm, MaskedLayerNorm)):
            set_submodule(net, name, module.layer)
    return net


def _mask_keys(cg: ChannelGraph) -> dict[int, str]:
    """A name per group root: the first layer writing it, with ``:i`` when it is the i-th
    segment of that layer's output (a layer whose output a chunk cut in pieces)."""
    keys: dict[int, str] = {}
    for lc in cg.layers:
        for i, seg in enumerate(lc.out_layout.segments):
            keys.setdefault(cg.root(seg.group), _key(lc.name) + (f":{i}" if i else ""))
    return keys


def _warn_frozen(cg: ChannelGraph) -> None:
    """One warning per freeze event that froze a layer's channels, naming those layers;
    groups kept whole anyway (reaching the graph output, an excluded layer) are not named."""
    fixed = {cg.root(g) for g in cg.fixed}
    producers: dict[int, list[str]] = {}
    for lc in cg.layers:
        for s in lc.out_layout.segments:
            producers.setdefault(cg.root(s.group), []).append(lc.name)
    for reason, groups in cg.freeze_events:
        roots = {cg.root(g) for g in groups} - fixed
        layers = sorted({n for r in roots for n in producers.get(r, [])})
        if layers:
            warnings.warn(
                f"lightning_dnas: {reason} is not searchable; the output channels of "
                f"{', '.join(layers)} are kept whole",
                stacklevel=4,
            )


def check_export(search: nn.Module, exported: nn.Module, example: tuple[Any, ...]) -> None:
    """Run ``search`` and ``exported`` in eval mode on ``example`` and raise a RuntimeError
    unless every output agrees (max abs difference <= 1e-5 of the output scale): a wrong
    network is never returned silently. Both keep their train/eval mode afterwards."""
    modes = {m: m.training for m in (*search.modules(), *exported.modules())}
    search.eval()
    exported.eval()
    try:
        with torch.no_grad():
            ref = _tensors(search(*example))
            out = _tensors(exported(*example))
    finally:
        for m, training in modes.items():
            m.training = training
    if len(ref) != len(out):
        raise RuntimeError("the exported network returns a different number of outputs")
    for a, b in zip(ref, out, strict=True):
        if a.shape != b.shape:
            raise RuntimeError(f"the exported network's output has shape {tuple(b.shape)}, "
                               f"the search network's {tuple(a.shape)}")  # fmt: skip
        err = float((a - b).abs().max()) if a.numel() else 0.0
        scale = max(float(a.abs().max()), 1.0) if a.numel() else 1.0
        if err > 1e-5 * scale:
            raise RuntimeError(
                f"the exported network differs from the search network (max abs difference "
                f"{err:.3g}); this is a bug in lightning_dnas's conversion: please report it"
            )


def _key(name: str) -> str:
    return name.replace(".", "/")


def _tensors(out: Any) -> list[Tensor]:
    if isinstance(out, Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _tensors(o)]
    if isinstance(out, dict):
        return [t for o in out.values() for t in _tensors(o)]
    return []
