"""Budgets: land the exported network on the user's cost numbers in one fit (SPEC section 8).

A user states ``{"params": 5000}`` (any costs the search knows, several at once), not a
lambda. :class:`BudgetController` owns one multiplier ``lambda_n >= 0`` per budget ``B_n`` and
gives the term to add to the task loss at every step::

    R = s * sum_n lambda_n * soft_n / B_n        (after the ramp: only while h_n > B_n)

``soft_n`` is the engine's soft cost (its gradient drives the masks); ``h_n`` the *measured*
cost of the current state: the hard cost (binarized masks, kept taps; SuperNet choices
weighted by ``p = softmax(alpha/T)`` when the cost has a vectorised form, else the argmax
hard cost, then measured every ``measure_every`` steps only). ``s`` is the task loss at
the first step (``term(loss)``), so ``lambda`` is dimensionless. Dual ascent after every
step (:meth:`update`, LightNAS' rule)::

    lambda_n <- clip(lambda_n + eta * (m_n / T_n(t) - 1), 0, lambda_max)
    T_n(t) = C_n^(1-r) * B_n^r,   r = min(1, t / ramp_steps)

``C_n`` is the seed's cost: the target ramps geometrically from the seed to the budget, so
the multiplier grows only as fast as the masks can follow (Adam moves a mask about ``lr``
per step, so a hard cost answers hundreds of steps late; a multiplier driven by that gap
winds up and prunes every channel at once, measured: 28,266 -> 84 params for a 7,066
budget). During the ramp ``m_n = soft_n`` (it answers at once); after it ``m_n = h_n`` and
the term is a hinge on ``h_n``: no pressure while the network export would produce fits.

:meth:`finalize` is the feasibility step, run on the state to export: choices are set to
the most probable candidate combination that fits (enumerated), then the lowest-ranked
channels/taps (rank: ``theta``, the relaxed mask) are dropped until every hard cost fits,
then the highest-ranked dropped ones are put back, one pass, while everything still fits.
The exported network is never over budget and, where one channel or tap is small against
the budget, within a channel's cost of it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from ..cost.fast import FAST_COSTS
from ..engine import DNAS
from .measure import fast_hard_cost, smallest_cost
from .repair import choose_combination, repair


class BudgetError(ValueError):
    """A budget that no network of the search space meets, or an invalid budget."""


class BudgetController:
    """Multipliers, term and feasibility step for ``budgets = {cost name: B}``.

    Hand-written loop::

        ctrl = BudgetController(search, {"params": 5000})
        for x, y in batches:
            loss = F.cross_entropy(search(x), y)
            (loss + ctrl.term(loss)).backward()
            opt.step(); arch_opt.step(); ctrl.update()
        ctrl.finalize()                      # never over budget
        net = search.export()

    Args:
        search: the engine (:class:`PIT`, :class:`SuperNet`, :class:`PITSuperNet`).
        budgets: ``{cost name: budget}``, names among ``search.costs``, budgets > 0.
        ramp_steps: steps over which the target ramps from the seed's cost to the budget
            (the callback: half the search stage's optimizer steps).
        eta: dual step per update (multiplier change for a relative gap of 1).
        lambda_max: cap of a multiplier.
        warn: warn for a budget the seed already meets (off when the controller is rebuilt
            to load a checkpoint's state: the state it is built on is not the seed).

    Raises:
        BudgetError: a non-positive budget, or one below the smallest network the search
            space holds (the message gives that floor). ``KeyError``: unknown cost names.
    """

    def __init__(self, search: DNAS, budgets: Mapping[str, float], ramp_steps: int = 500,
                 eta: float = 0.01, lambda_max: float = 100.0,
                 warn: bool = True, measure_every: int = 8) -> None:  # fmt: skip
        if not budgets:
            raise BudgetError("budgets names no cost; give e.g. {'params': 5000}")
        unknown = set(budgets) - set(search.costs)
        if unknown:
            raise KeyError(f"budget for unknown cost(s) {sorted(unknown)}; "
                           f"this search has costs {list(search.costs)}")  # fmt: skip
        for name, value in budgets.items():
            if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                raise BudgetError(f"budget {name}={value!r} must be a positive number")
        self.search = search
        self.budgets = {n: float(v) for n, v in budgets.items()}
        self.eta, self.lambda_max = float(eta), float(lambda_max)
        self.ramp_steps = int(ramp_steps)
        self.floors = {n: smallest_cost(search, n) for n in self.budgets}
        for name, budget in self.budgets.items():
            if budget < self.floors[name]:
                raise BudgetError(
                    f"budget {name}={budget:g} is infeasible: the smallest network of this "
                    f"search space (one channel per group, one tap, cheapest candidates; "
                    f"frozen layers whole) costs {self.floors[name]:g}")  # fmt: skip
        seed = {n: self.measure(n) for n in self.budgets}
        met = [n for n in self.budgets if seed[n] <= self.budgets[n]]
        for name in met if warn else []:
            warnings.warn(f"lightning_dnas: the seed already meets the budget {name}="
                          f"{self.budgets[name]:g} (it costs {seed[name]:g}); no pressure "
                          "on that cost", stacklevel=2)  # fmt: skip
        # A budget the seed meets gets no multiplier: its term is 0 for the whole search.
        self.active = [n for n in self.budgets if n not in met]
        self.lambdas = {n: 0.0 for n in self.active}
        self.seed_costs = dict(seed)
        self.soft: dict[str, float] = dict(seed)
        self.scale: float | None = None
        self.steps = 0
        self.last: dict[str, float] = dict(seed)
        # Costs without a vectorised hard form (peak RAM, user CostModels) are measured
        # exactly, which costs about a step's 3%: every `measure_every` steps only. A mask
        # moves about arch_lr per step, so the hard cost lags by a few steps at most.
        self.measure_every = max(int(measure_every), 1)

    # -- the step ---------------------------------------------------------------------------
    def _vectorised(self, name: str) -> bool:
        model = self.search.costs[name]
        return callable(model.fn) and model.fn in FAST_COSTS

    def measure(self, name: str) -> float:
        """``h_n``: the measured cost of the current state (see the module docstring)."""
        model = self.search.costs[name]
        if self._vectorised(name):
            with torch.no_grad():
                return float(fast_hard_cost(self.search, FAST_COSTS[model.fn]))
        return float(self.search.hard_cost(name))

    def gaps(self) -> dict[str, float]:
        """Relative gaps ``h_n / B_n - 1`` of the last measurement (negative: under budget)."""
        return {n: self.last[n] / self.budgets[n] - 1.0 for n in self.budgets}

    def term(self, loss: Tensor | float | None = None,
             costs: Mapping[str, Tensor] | None = None) -> Tensor:  # fmt: skip
        """``R`` to add to the task loss this step. ``loss``: the task loss (its value at the
        first call sets ``s``; 1 without it). ``costs``: soft costs already computed."""
        if self.scale is None:
            value = float(loss.detach()) if isinstance(loss, Tensor) else loss
            self.scale = 1.0 if value is None or not value > 0 else float(value)
        ref = next(self.search.parameters())
        total = ref.new_zeros(())
        for name in self.active:
            if self._vectorised(name) or self.steps % self.measure_every == 0:
                self.last[name] = self.measure(name)
            soft = costs[name] if costs is not None and name in costs else (
                self.search.soft_cost(name))  # fmt: skip
            self.soft[name] = float(soft.detach())
            # After the ramp the pressure is a hinge on the measured cost: none while the
            # network export would produce fits, so the multiplier's decay lag cannot prune on.
            hinge_off = self.steps >= self.ramp_steps and self.last[name] <= self.budgets[name]
            if self.lambdas[name] > 0.0 and not hinge_off:
                total = total + self.lambdas[name] * soft / self.budgets[name]
        return total * self.scale

    def target(self, name: str) -> float:
        """``T_n(t)``: geometric ramp from the seed's cost to ``B_n`` over ``ramp_steps``."""
        r = min(1.0, self.steps / max(self.ramp_steps, 1))
        return self.seed_costs[name] ** (1.0 - r) * self.budgets[name] ** r

    def update(self) -> None:
        """Dual ascent on the gaps measured by the last :meth:`term` (call once per step)."""
        for name in self.active:
            ramp = self.steps < self.ramp_steps
            value = self.soft[name] if ramp else self.last[name]
            gap = value / self.target(name) - 1.0
            value = self.lambdas[name] + self.eta * gap
            self.lambdas[name] = min(max(value, 0.0), self.lambda_max)
        self.steps += 1

    def feasible(self) -> bool:
        """Whether the current hard costs (argmax choices) are within every budget."""
        return all(self.search.hard_cost(n) <= b for n, b in self.budgets.items())

    def finalize(self) -> dict[str, float]:
        """The feasibility step (module docstring): edits masks and choice logits in place so
        that every hard cost is <= its budget; returns the hard costs after it."""
        choose_combination(self.search, self.budgets)
        repair(self.search, self.budgets)
        costs = {n: float(self.search.hard_cost(n)) for n in self.budgets}
        over = {n: c for n, c in costs.items() if c > self.budgets[n]}
        if over:  # cannot happen above the floor; a guard, not a path
            raise BudgetError(f"the feasibility step could not fit {over} in {self.budgets}")
        return costs

    # -- checkpoints ------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything that changes during the search (multipliers, loss scale, step count,
        last measurement): loading it resumes the controller exactly."""
        return {"budgets": dict(self.budgets), "lambdas": dict(self.lambdas),
                "scale": self.scale, "steps": self.steps, "last": dict(self.last),
                "soft": dict(self.soft), "seed_costs": dict(self.seed_costs),
                "active": list(self.active)}  # fmt: skip

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`; the budgets must be the same."""
        if dict(state["budgets"]) != self.budgets:
            raise BudgetError(f"checkpoint budgets {dict(state['budgets'])} differ from "
                              f"{self.budgets}")  # fmt: skip
        self.lambdas = {n: float(v) for n, v in state["lambdas"].items()}
        self.scale = state["scale"]
        self.steps = int(state["steps"])
        self.last = {n: float(v) for n, v in state["last"].items()}
        self.soft = {n: float(v) for n, v in state["soft"].items()}
        # The seed's costs and the active budgets are those of the search's start, not of
        # the state a checkpoint rebuilt the controller on.
        self.seed_costs = {n: float(v) for n, v in state["seed_costs"].items()}
        self.active = list(state["active"])
