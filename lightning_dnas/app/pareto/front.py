"""Pareto dominance for (cost, metric) points: lower cost is better, the metric's direction
follows its name."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

# Metric names where lower is better; every other name (acc, auc, f1, ...) is maximised.
LOWER_IS_BETTER = frozenset({"loss", "mse", "mae", "rmse", "error", "err"})


def maximize_metric(name: str) -> bool:
    """True if a larger ``name`` is better: False for losses and errors (``loss``, ``mse``,
    ``mae``, ``rmse``, ``error``, ``err``, anything ending in ``loss``), True otherwise."""
    lower = name.lower()
    return not (lower in LOWER_IS_BETTER or lower.endswith("loss"))


def pareto_mask(points: Sequence[tuple[float, float]], maximize: bool = True) -> list[bool]:
    """For each ``(cost, metric)`` point, whether no other point dominates it.

    ``q`` dominates ``p`` when ``q`` is at least as good in both (cost no higher, metric no
    worse) and strictly better in one; so duplicates of an optimal point are all optimal.
    O(n log n): sort by cost and keep the best metric seen at strictly lower cost."""
    sign = 1.0 if maximize else -1.0
    order = sorted(range(len(points)), key=lambda i: points[i][0])
    optimal = [False] * len(points)
    best_cheaper = float("-inf")  # best signed metric among points of strictly lower cost
    for _, same_cost in itertools.groupby(order, key=lambda i: points[i][0]):
        group = list(same_cost)
        best_here = max(sign * points[i][1] for i in group)
        for i in group:
            value = sign * points[i][1]
            # Dominated by a cheaper point that is no worse, or an equal-cost better one.
            optimal[i] = value > best_cheaper and value >= best_here
        best_cheaper = max(best_cheaper, best_here)
    return optimal
