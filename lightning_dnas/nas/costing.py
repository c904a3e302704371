"""The cost half of the search engine: soft (differentiable) and hard (exported) costs of
the current search state, layer by layer.

``SearchCosts`` is a base class of :class:`~lightning_dnas.nas.engine.DNAS` and reads the
state the engine builds (channel graph, masks, tap masks, choices); it is a file of its own
because the costs are one job (the budgets and memory costs extend it) and the engine another.
A layer call becomes a :class:`LayerShape` with effective channel counts (``sum(theta)``
soft, the kept count hard) and kernel taps; a :class:`CostModel` maps it to a number.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from .cost.fast import FAST_COSTS, LinearCounts
from .cost.models import CostModel, LayerShape, PeakRamCost, as_tensor
from .graph.channel_graph import ChannelGraph, LayerCall
from .graph.channel_layout import Layout
from .memory_costs import hard_peak, soft_peak
from .pit.masks import THRESHOLD, ChannelMask, MaskBank, TapMask
from .supernet.module import SuperNetModule


class SearchCosts:
    """Soft and hard costs of a search state (the engine's attributes below, set by its
    constructor): ``costs`` by name, the channel graph, masks by group root, tap masks by
    layer, the choices, every layer call and the first call of each layer."""

    costs: dict[str, CostModel]
    choices: dict[str, SuperNetModule]
    sampled_cost: bool
    _graph: ChannelGraph
    _group_masks: dict[int, ChannelMask]
    _taps: dict[str, TapMask]
    _calls: list[LayerCall]
    _first_calls: list[LayerCall]
    _owners: dict[str, tuple[str, int] | None]
    _fast: LinearCounts
    _bank: MaskBank
    net: nn.Module

    def _cost_name(self, name: str | None) -> str:
        if name is None:
            return next(iter(self.costs))
        if name not in self.costs:
            raise KeyError(f"unknown cost {name!r}; this search has costs {list(self.costs)}")
        return name

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
        if isinstance(model, PeakRamCost):  # network-level: the liveness table
            return soft_peak(self, model.act_bits, ref)
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
        alphas = self._bank.alphas().abs() if self._group_masks else ref.new_zeros(0)
        weights = None
        if self.choices:
            probs = [self._weights(c) for c in self.choices.values()]
            weights = torch.cat([ref.new_ones(1), *probs])
        return self._fast.cost(alphas.to(ref.dtype), kind, weights)

    def hard_cost(self, name: str | None = None) -> float:
        """Exact cost of the binarized, argmax architecture (equals the exported network's)."""
        model = self.costs[self._cost_name(name)]
        if isinstance(model, PeakRamCost):
            return float(hard_peak(self, model.act_bits)[0])
        chosen = {n: c.argmax() for n, c in self.choices.items()}
        total = 0.0
        for lc in self._layer_calls(model):
            owner = self._owners[lc.name]
            if owner is None or chosen[owner[0]] == owner[1]:
                total += float(model(self._shape(lc, hard=True)))
        return total
