"""The feasibility step of :class:`~lightning_dnas.nas.budget.controller.BudgetController`: edit a
search state (masks, choice logits) in place until its hard costs fit the budgets.

1. Choices (:func:`choose_combination`). A hard cost is ``base + sum_m d_m[k_m]``: every
   layer lies inside at most one candidate and its cost depends only on the channel masks,
   so the candidates' contributions ``d_m`` are measured one choice at a time and every
   combination's cost follows without evaluating it. Among the combinations that fit, the
   ones within 3% of the largest fitting cost (on the tightest budget) are "close"; the most
   probable close one (``sum_m log p_m[k_m]``) is kept, the argmax whenever it is close.
   With PIT masks too (PITSuperNet) a combination fits when its smallest network fits (the
   channels are repaired next); the argmax is then kept whenever it fits.
2. Channels and taps (:func:`repair`). Drop: while a hard cost is over its budget, the kept
   item of lowest rank goes (a channel-mask entry, rank ``theta = |alpha|``; or the oldest
   kept tap of a Conv1d, rank its ``theta_beta``). Fill: the items not kept, in decreasing
   rank, are put back one pass, each only if every cost still fits.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable, Mapping

import torch

from ..cost.fast import FAST_COSTS
from ..engine import DNAS
from ..pit.masks import THRESHOLD, ChannelMask, TapMask
from .measure import fast_hard_cost, smallest_cost

_BELOW, _ABOVE = 0.49, 0.51  # |alpha| / theta_beta values just off the 0.5 threshold
_ENUMERATE = 200_000  # combinations enumerated; above that, a greedy descent
CLOSE = 0.97


def hard_costs(search: DNAS, budgets: Mapping[str, float]) -> dict[str, float]:
    """Exact hard costs (argmax choices) of every budgeted cost, vectorised where it can be."""
    out = {}
    for name in budgets:
        model = search.costs[name]
        if callable(model.fn) and model.fn in FAST_COSTS:
            with torch.no_grad():
                out[name] = float(fast_hard_cost(search, FAST_COSTS[model.fn], expected=False))
        else:
            out[name] = float(search.hard_cost(name))
    return out


def _fits(costs: Mapping[str, float], budgets: Mapping[str, float]) -> bool:
    return all(costs[n] <= budgets[n] for n in budgets)


def _set_argmax(choice: object, index: int) -> None:
    alpha = choice.alpha  # type: ignore[attr-defined]
    with torch.no_grad():
        if int(alpha.argmax()) != index:
            alpha[index] = alpha.max() + 1e-3


def choose_combination(search: DNAS, budgets: Mapping[str, float]) -> tuple[int, ...]:
    """Step 1 (module docstring); sets the choices' argmax and returns the combination."""
    choices = list(search.choices.values())
    if not choices:
        return ()
    has_masks = bool(search._group_masks) or bool(search._taps)
    current = tuple(c.argmax() for c in choices)
    saved = [c.alpha.detach().clone() for c in choices]

    def set_combo(combo: tuple[int, ...]) -> None:
        for c, k in zip(choices, combo, strict=True):
            with torch.no_grad():
                c.alpha.fill_(0.0)
                c.alpha[k] = 1.0

    def cost_of(combo: tuple[int, ...]) -> dict[str, float]:
        set_combo(combo)
        if has_masks:
            return {n: smallest_cost(search, n) for n in budgets}
        return hard_costs(search, budgets)

    base_combo = tuple(0 for _ in choices)
    base = cost_of(base_combo)
    deltas: list[list[dict[str, float]]] = []
    for m, c in enumerate(choices):
        row = []
        for k in range(len(c.names)):
            combo = (*base_combo[:m], k, *base_combo[m + 1:])
            cost = cost_of(combo)
            row.append({n: cost[n] - base[n] for n in budgets})
        deltas.append(row)
    with torch.no_grad():
        for c, value in zip(choices, saved, strict=True):
            c.alpha.copy_(value)
    logp = [torch.log(c.probabilities().detach()).tolist() for c in choices]

    def total(combo: tuple[int, ...]) -> dict[str, float]:
        return {n: base[n] + sum(deltas[m][k][n] for m, k in enumerate(combo)) for n in budgets}

    def load(combo: tuple[int, ...]) -> float:  # the tightest budget's fill
        cost = total(combo)
        return max(cost[n] / budgets[n] for n in budgets)

    if has_masks:
        chosen = _with_masks(search, choices, current, total, budgets, set_combo, saved, logp)
    elif math.prod(len(c.names) for c in choices) <= _ENUMERATE:
        combos = [x for x in itertools.product(*(range(len(c.names)) for c in choices))
                  if _fits(total(x), budgets)]  # fmt: skip
        if not combos:  # below the floor: the controller refuses such budgets
            raise ValueError(f"no candidate combination fits {dict(budgets)}")
        top = max(load(x) for x in combos)
        close = [x for x in combos if load(x) >= CLOSE * top]
        chosen = max(close, key=lambda x: sum(logp[m][k] for m, k in enumerate(x)))
    else:
        chosen = _greedy(current, deltas, total, budgets)
    for c, k in zip(choices, chosen, strict=True):
        _set_argmax(c, k)
    return chosen


def _with_masks(search: DNAS, choices: list, current: tuple[int, ...],
                total: Callable[[tuple[int, ...]], dict[str, float]],
                budgets: Mapping[str, float], set_combo: Callable[[tuple[int, ...]], None],
                saved: list[torch.Tensor], logp: list[list[float]]) -> tuple[int, ...]:  # fmt: skip
    """PITSuperNet: keep the argmax when its smallest network fits and its current channels
    reach 97% of the tightest budget (the repair then fits them); else the most probable
    combination whose smallest network fits and whose current-channel cost reaches it (the
    one reaching highest when none does). ``total`` gives the smallest networks' costs."""
    combos = [x for x in itertools.product(*(range(len(c.names)) for c in choices))
              if _fits(total(x), budgets)][:_ENUMERATE]  # fmt: skip
    if not combos:
        raise ValueError(f"no candidate combination fits {dict(budgets)}")

    def reach(combo: tuple[int, ...]) -> float:
        set_combo(combo)
        costs = hard_costs(search, budgets)
        return max(costs[n] / budgets[n] for n in budgets)

    reaches = {x: reach(x) for x in combos}
    with torch.no_grad():
        for c, value in zip(choices, saved, strict=True):
            c.alpha.copy_(value)
    if current in reaches and reaches[current] >= CLOSE:
        return current
    good = [x for x in combos if reaches[x] >= CLOSE]
    if not good:
        return max(combos, key=lambda x: reaches[x])
    return max(good, key=lambda x: sum(logp[m][k] for m, k in enumerate(x)))


def _greedy(current: tuple[int, ...], deltas: list[list[dict[str, float]]],
            total: Callable[[tuple[int, ...]], dict[str, float]],
            budgets: Mapping[str, float]) -> tuple[int, ...]:  # fmt: skip
    """Too many combinations to enumerate: switch one choice at a time to the candidate that
    lowers the largest overrun most, until everything fits."""
    combo = list(current)
    while not _fits(total(tuple(combo)), budgets):
        best = None
        for m, row in enumerate(deltas):
            for k in range(len(row)):
                trial = tuple([*combo[:m], k, *combo[m + 1:]])
                over = max(total(trial)[n] / budgets[n] for n in budgets)
                if best is None or over < best[0]:
                    best = (over, m, k)
        assert best is not None
        if combo[best[1]] == best[2]:
            raise ValueError(f"no candidate combination fits {dict(budgets)}")
        combo[best[1]] = best[2]
    return tuple(combo)


# -- step 2: channels and taps --------------------------------------------------------------
def _set_abs(param: torch.Tensor, index: int, value: float) -> None:
    sign = 1.0 if float(param[index]) >= 0 else -1.0
    param[index] = sign * value


def _tap_start(taps: TapMask) -> int:
    """Index of the oldest tap the receptive-field mask keeps (kept taps are a suffix)."""
    return int(torch.nonzero(taps.theta_beta() > THRESHOLD)[0])


def _set_tap_start(taps: TapMask, start: int) -> None:
    """Edit ``beta`` so that the kept suffix starts at ``start``: ``sum_{l<start}|beta_l|
    <= 0.49`` (scaled down if larger) and ``theta_beta[start] >= 0.51``."""
    beta = taps.beta
    assert beta is not None
    b = beta.detach().abs()
    prefix = b[:start].sum()
    if prefix > _BELOW:
        b[:start] *= _BELOW / prefix
        prefix = b[:start].sum()
    if start < taps.kernel_size - 1:
        b[start] = max(float(b[start]), _ABOVE - float(prefix))
    beta.copy_(torch.where(beta >= 0, b, -b))


def _items(search: DNAS) -> list[tuple[str, ChannelMask | TapMask, int]]:
    items: list[tuple[str, ChannelMask | TapMask, int]] = []
    for mask in search._group_masks.values():
        items.extend(("channel", mask, i) for i in range(mask.channels) if mask._scale[i] != 0)
    items.extend(("taps", t, 0) for t in search._taps.values() if t.beta is not None)
    return items


def repair(search: DNAS, budgets: Mapping[str, float]) -> dict[str, float]:
    """Step 2 (module docstring); returns the hard costs after it."""
    items = _items(search)
    with torch.no_grad():
        costs = hard_costs(search, budgets)
        while not _fits(costs, budgets):  # drop
            best = None
            thetas = {id(m): m.theta().tolist() for k, m, _ in items if k == "channel"}
            for kind, mod, i in items:
                if kind == "channel":
                    rank = thetas[id(mod)][i]
                    ok = rank > THRESHOLD
                else:
                    start = _tap_start(mod)
                    ok, rank = start < mod.kernel_size - 1, float(mod.theta_beta()[start])
                if ok and (best is None or rank < best[0]):
                    best = (rank, kind, mod, i)
            if best is None:
                break  # nothing left to drop: the smallest network (the caller reports)
            _, kind, mod, i = best
            if kind == "channel":
                _set_abs(mod.alpha, i, _BELOW)
            else:
                _set_tap_start(mod, _tap_start(mod) + 1)
            costs = hard_costs(search, budgets)
        heap: list[tuple[float, int, int]] = []  # (-rank, tie, item index): a max-heap
        for n, (kind, mod, i) in enumerate(items):
            if kind == "channel" and float(mod.theta()[i]) <= THRESHOLD:
                heapq.heappush(heap, (-float(mod.theta()[i]), n, n))
            elif kind == "taps" and _tap_start(mod) > 0:
                heapq.heappush(heap, (-float(mod.theta_beta()[_tap_start(mod) - 1]), n, n))
        while heap:  # fill
            _, _, n = heapq.heappop(heap)
            kind, mod, i = items[n]
            if kind == "channel":
                old = float(mod.alpha[i])
                _set_abs(mod.alpha, i, _ABOVE)
            else:
                old_beta = mod.beta.detach().clone()
                start = _tap_start(mod)
                _set_tap_start(mod, start - 1)
            trial = hard_costs(search, budgets)
            if _fits(trial, budgets):
                costs = trial
                if kind == "taps" and start - 1 > 0:
                    heapq.heappush(heap, (-float(mod.theta_beta()[start - 2]), n, n))
            elif kind == "channel":
                mod.alpha[i] = old
            else:
                mod.beta.copy_(old_beta)
    return costs
