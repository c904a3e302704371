"""The regulariser in the user's backward pass and the architecture optimizer.

:class:`ArchStep` holds the search network the callback works on and the optimizer of its
architecture parameters; it computes ``lambda * cost (+ icv * ICV)``, adds it to a loss,
and steps the architecture (joint: on the training batches, with the user's gradients;
alternating: on a validation batch, first-order DARTS style). What it needs of the trainer
(the grad scaler, the batch position, a silenced ``training_step``, a DDP mean) the
callback passes in, so this module touches no Lightning object itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import Tensor, nn
from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

from ..nas.budget import BudgetController, BudgetError
from ..nas.engine import DNAS
from ..stages import Stage
from .clock import StageClock


def check_budget(budget: Mapping[str, float] | None,
                 costs: Mapping[str, Any]) -> dict[str, float] | None:  # fmt: skip
    """``DNASCallback(budget=...)``: names among the costs, positive numbers (ValueError)."""
    if budget is None:
        return None
    unknown = set(budget) - set(costs)
    if unknown or not budget:
        raise ValueError(f"budget names unknown costs {sorted(unknown)}; the costs are "
                         f"{list(costs)}")  # fmt: skip
    for name, value in budget.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise ValueError(f"budget {name}={value!r} must be a positive number")
    return {n: float(v) for n, v in budget.items()}


def budget_stage(stages: list[Stage]) -> int:
    """Index of the stage a budget binds: the last search (its export is the final network;
    earlier searches of a cascade keep their ``strength``)."""
    return max(i for i, s in enumerate(stages) if s.kind == "search")


def budget_binds(stages: list[Stage], index: int) -> bool:
    """Whether stage ``index`` runs the budget's controller: the budget stage, or the warmup
    whose network that search continues (same method, right before it; the clock's rule),
    so that an infeasible budget fails in ``setup`` rather than after the warmup."""
    last = budget_stage(stages)
    if index == last:
        return True
    stage, nxt = stages[index], stages[last]
    return index == last - 1 and stage.kind == "warmup" and stage.method == nxt.method


def stage_lambdas(strength: float | Mapping[str, float], costs: Mapping[str, Any],
                  stage: Stage | None) -> dict[str, float]:  # fmt: skip
    """``{cost name: lambda}`` of ``stage`` (its own strength, else the callback's
    ``strength``; ``stage=None``: the callback's). A number is the first cost's lambda.

    Raises:
        MisconfigurationException: a strength names a cost that is not in ``costs``, or is
            not a number.
    """
    value = strength if stage is None or stage.strength is None else stage.strength
    first = next(iter(costs))
    lambdas = dict(value) if isinstance(value, Mapping) else {first: value}
    unknown = set(lambdas) - set(costs)
    if unknown:
        raise MisconfigurationException(f"strength names unknown costs {sorted(unknown)}; "
                                        f"the costs are {list(costs)}")  # fmt: skip
    try:
        return {k: float(v) for k, v in lambdas.items()}
    except (TypeError, ValueError) as err:
        raise MisconfigurationException(f"strength must be numbers, got {value!r}") from err


class ArchAdam(torch.optim.Adam):
    """torch's Adam, without its per-step CUDA-graph-capture check while every parameter
    is on the CPU (a CPU step is never captured in a CUDA graph).

    Why: ``lightning`` sets ``PYTORCH_NVML_BASED_CUDA_CHECK=1`` when it is imported, and
    with it that check (``torch.accelerator.current_accelerator(check_available=True)``,
    then ``torch.cuda.device_count()``) tries to load NVML at every step with a CUDA build
    of torch on a machine without a GPU driver: a failed library search (seven ``openat``,
    an ``mmap`` of ``ld.so.cache``) and a ctypes class left as a garbage cycle at every
    step, 110-120 us here, twice the cost of the fused step itself (docs/BENCHMARKS.md). On
    any other device the check runs as in torch."""

    def _accelerator_graph_capture_health_check(self) -> None:
        if all(p.device.type == "cpu" for g in self.param_groups for p in g["params"]):
            return
        super()._accelerator_graph_capture_health_check()


def default_arch_optimizer(lr: float) -> Callable[[list[dict[str, Any]]], torch.optim.Optimizer]:
    """Adam without weight decay (:class:`ArchAdam`): the architecture parameters' own
    optimizer (a decay would pull every mask and logit towards 0, a bias the cost term
    does not ask for).

    Fused (``fused=True``: one kernel over every architecture tensor) where torch has a
    fused Adam for their device and dtype, else the default implementation: on CPU the
    default loops in Python over the tensors, a dozen small ops for each of the 5-30 mask
    vectors, which was a third of the search step's extra ops (docs/BENCHMARKS.md)."""

    def make(groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
        # torch checks this only at the first step; it is torch's own condition.
        devices = _get_fused_kernels_supported_devices()
        fused = all(p.is_floating_point() and p.device.type in devices
                    for g in groups for p in g["params"])  # fmt: skip
        return ArchAdam(groups, lr=lr, weight_decay=0.0, fused=fused)

    return make


class ArchStep:
    """The search network's regulariser and architecture optimizer.

    ``search`` is the search network in the module (``None`` while it is plain) and
    ``optimizer`` the architecture optimizer (``None`` without one); both are set by
    :meth:`adopt` whenever the network changes.
    """

    def __init__(self) -> None:
        self.search: DNAS | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self._term_batch: tuple[int, int] | None = None
        self._terms: dict[str, float] = {}
        self.budget: BudgetController | None = None
        self._last_reg: float | None = None  # the last regulariser value (nothing_removed)

    def adopt(self, net: nn.Module | None, softmax: str | None,
              make_optimizer: Callable[[list[dict[str, Any]]], torch.optim.Optimizer],
              ) -> None:  # fmt: skip
        """Work on ``net`` from now on: set its combiner mode (``softmax``, unless
        ``None``) and give its architecture parameters a fresh optimizer (none for a plain
        network or one without architecture parameters)."""
        self.search = net if isinstance(net, DNAS) else None
        self.optimizer, self.budget = None, None
        if self.search is None:
            return
        if softmax is not None:
            self.search.set_softmax(softmax)
        groups = self._groups()
        if groups:
            self.optimizer = make_optimizer(groups)

    def release(self) -> None:
        """The network is plain again (exported): no search network, no optimizer."""
        self.search, self.optimizer, self.budget = None, None, None

    # -- budgets (nas/budget/) --------------------------------------------------------------
    def start_budget(self, budgets: Mapping[str, float] | None, clock: StageClock,
                     state: Mapping[str, Any] | None = None) -> None:  # fmt: skip
        """Own a :class:`BudgetController` for the search network when the ``clock``'s stage
        binds the budget (:func:`budget_binds`; ``budgets`` None: never), its ramp set per
        epoch (:meth:`set_ramp`); ``state``: a checkpoint's controller state. An infeasible
        budget is a ``MisconfigurationException`` giving the floor."""
        binds = budget_binds(clock.stages, clock.index)
        if budgets is None or self.search is None or not binds:
            return
        if self.budget is not None and not state:
            return
        try:  # a resumed controller warns as the search's start did, not about this state
            self.budget = BudgetController(self.search, budgets, ramp_steps=1, warn=not state)
        except BudgetError as err:
            raise MisconfigurationException(str(err)) from err
        if state:
            self.budget.load_state_dict(state)

    def set_ramp(self, steps: int) -> None:
        """The budget target's ramp length (recomputed at each epoch start: exact on resume)."""
        if self.budget is not None:
            self.budget.ramp_steps = max(steps, 1)

    def budget_state(self) -> dict[str, Any] | None:
        """The controller's checkpoint state (``None`` without a budget)."""
        return None if self.budget is None else self.budget.state_dict()

    def feasible_best(self, best: dict[str, Any] | None) -> dict[str, Any] | None:
        """The feasibility step on the state to export (``best`` snapshot, else the current
        one): returns the snapshot to export, every hard cost within its budget."""
        if self.budget is None or self.search is None:
            return best
        if best is not None:
            self.search.load_state_dict(best["state"])
        self.budget.finalize()
        return {**(best or {"epoch": None}), "state": self.snapshot()}

    def _groups(self) -> list[dict[str, Any]]:
        """One named param group per kind of architecture parameter, so that a stage's
        ``train`` selects them by name."""
        assert self.search is not None
        logits = [c.alpha for c in self.search.choices.values()]
        masks = [*self.search.channel_masks.parameters(), *self.search.tap_masks.parameters()]
        return [{"params": p, "name": n} for n, p in (("logits", logits), ("masks", masks)) if p]

    def arch_parameter_ids(self) -> set[int]:
        """``id`` of every architecture parameter (masks and choice logits) of the search
        network; empty for a plain network."""
        if self.search is None:
            return set()
        ids = {id(p) for p in self.search.nas_parameters()}
        ids.update(id(c.alpha) for c in self.search.choices.values())
        return ids

    # -- the regulariser --------------------------------------------------------------------
    def regularizer(self, lambdas: Mapping[str, float], target: Any, icv: float,
                    loss: Tensor | None = None) -> Tensor:  # fmt: skip
        """``lambda * cost`` (hinged on ``target``) ``+ icv * ICV``, or with a budget the
        controller's term (``loss``: the task loss, its first value scales the term);
        keeps the terms for :meth:`take_terms`."""
        assert self.search is not None
        # The soft costs are computed once: the regulariser takes them and they are logged.
        soft = {name: self.search.soft_cost(name) for name in self.search.costs}
        if self.budget is not None:
            reg = self.budget.term(loss, costs=soft)
        else:
            reg = self.search.regularizer(dict(lambdas), target, costs=soft)
        self._terms = {"dnas/reg": float(reg.detach())}
        self._last_reg = self._terms["dnas/reg"]
        if self.budget is not None:
            self._terms.update({f"dnas/lambda/{n}": v for n, v in self.budget.lambdas.items()})
            self._terms.update({f"dnas/budget_gap/{n}": g
                                for n, g in self.budget.gaps().items()})  # fmt: skip
        self._terms.update({f"dnas/soft_{n}": float(v.detach()) for n, v in soft.items()})
        if self.search.choices:
            value = self.search.icv()
            self._terms["dnas/icv"] = float(value.detach())
            if icv:
                reg = reg + icv * value
        return reg

    def add_to_loss(self, loss: Tensor, term: Callable[[], Tensor], batch: tuple[int, int],
                    once_per_batch: bool, divide: int | None, scaler: Any) -> None:  # fmt: skip
        """Add ``term()`` to ``loss`` in place, treated as Lightning treated the loss:
        divided by ``divide`` (``accumulate_grad_batches``; ``None`` for manual optimization) and
        multiplied by the fp16 ``scaler``'s scale (``None``: no scaling). With
        ``once_per_batch`` (manual optimization: backward may run several times per batch)
        a second call for the same ``batch`` (``(epoch, batch index)``) adds nothing."""
        if once_per_batch and batch == self._term_batch:
            return
        self._term_batch = batch
        value = term()
        if divide is not None:
            value = value / divide
        if scaler is not None:
            value = scaler.scale(value)
        loss.add_(value.to(loss.dtype))

    def take_terms(self) -> dict[str, float]:
        """The last regulariser's terms (``dnas/reg``, ``dnas/soft_<cost>``, ``dnas/icv``),
        once: a fine-tune after the search must not log the last search values again."""
        terms, self._terms = self._terms, {}
        return terms

    # -- architecture steps -----------------------------------------------------------------
    def step(self, train: tuple[str, ...], scaler: Any) -> None:
        """A joint step: update the param groups named in ``train`` with the gradients the
        user's backward left (through the fp16 ``scaler`` when there is one: ``unscale_``
        then ``step``), drop the others' gradients, then clear all."""
        opt = self.optimizer
        if opt is None:
            return
        for group in opt.param_groups:
            if group.get("name") not in train:
                for p in group["params"]:
                    p.grad = None
        if scaler is not None:
            scaler.unscale_(opt)
            scaler.step(opt)
        else:
            opt.step()
        opt.zero_grad(set_to_none=True)
        if self.budget is not None:
            self.budget.update()

    def drop_grads(self) -> None:
        """Clear the architecture gradients without a step (outside joint search steps the
        user's backward still reaches the architecture parameters)."""
        if self.optimizer is not None:
            self.optimizer.zero_grad(set_to_none=True)

    def alternating_step(self, train: tuple[str, ...], task_loss: Tensor, term: Tensor,
                         reduce: Callable[[Tensor], Tensor]) -> None:  # fmt: skip
        """A first-order step on a validation batch: the gradients of ``task_loss + term``
        w.r.t. the architecture parameters of the groups in ``train`` only (the weights'
        gradients are left alone), each passed through ``reduce`` (the DDP mean)."""
        assert self.optimizer is not None
        params = [p for g in self.optimizer.param_groups
                  if g.get("name") in train for p in g["params"]]  # fmt: skip
        total = task_loss.float() + term
        grads = torch.autograd.grad(total, params, allow_unused=True)
        for p, g in zip(params, grads, strict=True):
            p.grad = None if g is None else reduce(g)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.budget is not None:
            self.budget.update()

    # -- what the rest of the callback reads ------------------------------------------------
    def hard_penalty(self, lambdas: Mapping[str, float]) -> float:
        """``sum(lambda * hard cost)``: what a search epoch's score adds to the metric.
        With a budget: 0 for a state within every budget, else ``1e6 * (1 + overrun)``, so a
        feasible state is always preferred (the feasibility step fixes the others)."""
        assert self.search is not None
        if self.budget is not None:
            over = max(self.search.hard_cost(n) / b - 1 for n, b in self.budget.budgets.items())
            return 0.0 if over <= 0 else 1e6 * (1.0 + over)
        return sum(lam * self.search.hard_cost(n) for n, lam in lambdas.items())

    def set_temperature(self, temperature: float | Callable[[int], float] | None,
                        epoch: int) -> None:  # fmt: skip
        """At a search epoch start: the choices' temperature, ``temperature`` (a number, or a
        schedule of ``epoch``, the epoch in the stage); ``None`` or no choices: nothing."""
        if self.search is None or not self.search.choices or temperature is None:
            return
        t = temperature
        self.search.set_temperature(float(t(epoch) if callable(t) else t))

    def progress(self) -> tuple[int | None, float | None, float | None]:
        """``(steps, lr, reg)``: the architecture steps the optimizer has taken (Adam-style
        ``state["step"]``, checkpointed with it; ``None`` for an optimizer without one),
        its first learning rate, and the last ``lambda * soft cost`` (``None`` before one)."""
        opt = self.optimizer
        if opt is None:
            return None, None, self._last_reg
        steps = [int(st["step"]) for st in opt.state.values() if "step" in st]
        lr = float(opt.param_groups[0]["lr"])
        return (max(steps) if steps else (0 if not opt.state else None)), lr, self._last_reg

    def snapshot(self) -> dict[str, Tensor]:
        """A detached copy of the search network's state (the best state so far)."""
        assert self.search is not None
        return {k: v.detach().clone() for k, v in self.search.state_dict().items()}

    def epoch_metrics(self) -> dict[str, float]:
        """The end-of-epoch values: ``dnas/hard_<cost>``, the temperature (one value, or
        one per choice when they differ) and ``dnas/theta/<choice>/<candidate>``."""
        assert self.search is not None
        out = {f"dnas/hard_{name}": float(self.search.hard_cost(name))
               for name in self.search.costs}  # fmt: skip
        temperatures = {n: float(c.temperature) for n, c in self.search.choices.items()}
        if len(set(temperatures.values())) == 1:
            out["dnas/temperature"] = next(iter(temperatures.values()))
        else:
            out.update({f"dnas/temperature/{n}": t for n, t in temperatures.items()})
        for cname, choice in self.search.choices.items():
            probs = torch.softmax(choice.alpha.detach() / choice.temperature, 0)
            for cand, p in zip(choice.names, probs.tolist(), strict=True):
                out[f"dnas/theta/{cname}/{cand}"] = p
        return out


__all__ = ["ArchAdam", "ArchStep", "budget_binds", "budget_stage", "check_budget",
           "default_arch_optimizer", "stage_lambdas"]
