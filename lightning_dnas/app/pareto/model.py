"""The Pareto tool's data model: loaded runs, groups over fine-tune seeds and over
full-pipeline seeds, the seed model's reference, and the report."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..results import RunResult

DEFAULT_METRIC = {"classification": "acc", "anomaly": "auc"}
# The costs a front can be drawn against; flash and peak_ram (bytes) are absent (None) in
# results written before the application recorded them.
COSTS = ("params", "macs", "flash", "peak_ram")


class ParetoError(Exception):
    """Input the tool cannot report on (no results, mixed tasks without ``--metric``)."""


@dataclass(frozen=True)
class LoadedRun:
    """One readable ``results.json``, with the sweep directory (as given) it was found in."""

    path: Path
    sweep: str
    result: RunResult


@dataclass(frozen=True)
class Group:
    """One searched architecture: its fine-tune seeds' ``metric`` as mean and sample std
    (``None`` for a single run). ``pareto``: on the front of all groups of the report;
    ``pareto_method``: on the front of its method's groups. ``budgets``: the run's
    ``budget.<cost>`` values (``{}``: none); ``flash``/``peak_ram`` ``None``: not recorded."""

    method: str
    lambdas: str
    search_id: str
    seed: int
    data: str
    model: str
    sweep: str
    params: float
    macs: float
    mean: float
    std: float | None
    n: int
    finetune_seeds: tuple[int | None, ...]
    flash: float | None = None
    peak_ram: float | None = None
    budgets: dict[str, float] = field(default_factory=dict)
    pareto: bool = False
    pareto_method: bool = False

    def cost(self, name: str) -> float:
        """One of :data:`COSTS`."""
        return getattr(self, name)


@dataclass(frozen=True)
class SeedGroup:
    """One search configuration over full-pipeline seeds: the mean and sample std, across
    seeds, of each seed's cost and fine-tune-averaged metric (std ``None`` for one seed)."""

    method: str
    lambdas: str
    data: str
    model: str
    params_mean: float
    params_std: float | None
    macs_mean: float
    macs_std: float | None
    mean: float
    std: float | None
    n: int
    seeds: tuple[int, ...]
    flash_mean: float | None = None
    flash_std: float | None = None
    peak_ram_mean: float | None = None
    peak_ram_std: float | None = None
    budgets: dict[str, float] = field(default_factory=dict)
    pareto: bool = False
    pareto_method: bool = False

    def cost(self, name: str) -> float:
        """Mean over seeds of one of :data:`COSTS`."""
        return getattr(self, f"{name}_mean")


@dataclass(frozen=True)
class Reference:
    """The seed model of one ``(data, model)``: distinct reference records averaged."""

    data: str
    model: str
    params: float
    macs: float
    mean: float
    std: float | None
    n: int
    flash: float | None = None
    peak_ram: float | None = None


@dataclass(frozen=True)
class ParetoReport:
    """What the tool found: groups sorted by method then cost, and what it skipped."""

    sweeps: tuple[str, ...]
    cost: str
    metric: str
    split: str
    maximize: bool
    groups: list[Group]
    seed_groups: list[SeedGroup]
    references: list[Reference]
    skipped: list[str]
    warnings: list[str]

    def budget_lines(self) -> list[float]:
        """The distinct budgets on the plotted cost among the groups, ascending (the PNG
        draws a vertical line at each)."""
        return sorted({g.budgets[self.cost] for g in self.groups if self.cost in g.budgets})
