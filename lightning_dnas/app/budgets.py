"""The application's budgets (``budget.<cost>=B``, docs/BUDGETS.md; read and checked before
any work by :func:`~lightning_dnas.app.checks.read_budget`): the cost dict of a search's
DNASCallback, the callback's infeasible-budget error as the application's one-line error,
and the budget's label in the Pareto tool.

``DNASCallback(budget=...)`` refuses a budget on a cost that is not among its ``cost=``
(``ValueError``), and several costs are what it supports for that: so the application adds
every budgeted cost to the callback's costs (after the penalised one, so the scalar
``strength`` stays the lambda of ``cost``). A budget on another cost than ``cost`` is
therefore fine.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from lightning.pytorch.utilities.exceptions import MisconfigurationException

from .checks import COSTS, ConfigError

# The costs every search of the application measures (and logs), budget or not.
MEASURED = ("params", "macs")


def search_costs(cost: str, budget: Mapping[str, float]) -> dict[str, str]:
    """The ``cost=`` dict of a search's DNASCallback: the penalised ``cost`` first (a
    number ``strength`` is the first cost's lambda), then :data:`MEASURED`, then every
    budgeted cost (the callback refuses a budget whose cost it does not have)."""
    names = dict.fromkeys((cost, *MEASURED, *budget))
    return {name: name for name in names}


def budget_error(err: MisconfigurationException,
                 budget: Mapping[str, float]) -> ConfigError | None:  # fmt: skip
    """The :class:`ConfigError` for the callback's "budget <cost>=<B> is infeasible: ...
    costs <floor>" (raised in its setup, where the search space is known), naming the
    config key ``budget.<cost>``; ``None`` for any other configuration error."""
    text = str(err)
    for name in budget:
        prefix = f"budget {name}="
        if text.startswith(prefix) and " is infeasible" in text:
            return ConfigError(f"budget.{name}={text.removeprefix(prefix)}")
    return None


def budget_label(budget: Mapping[str, float]) -> str:
    """``{"params": 5000.0}`` -> ``"params<=5000"`` (several: space separated; none: "-")."""
    return " ".join(f"{name}<={value:g}" for name, value in budget.items()) or "-"


def unknown_budget(overrides: Sequence[str]) -> str | None:
    """The error for a ``budget.<name>=...`` override (``+``/``~`` forms too) whose name is
    not a cost, listing the valid ones; ``None`` when there is none. Checked before Hydra
    composes the config: its struct error names the key but not the costs."""
    for text in overrides:
        match = re.match(r"^[+~]{0,2}budget\.([^=]+)=", text)
        if match and (name := match.group(1)) not in COSTS:
            return f"budget.{name}: {name!r} is not a cost; valid: {list(COSTS)}"
    return None
