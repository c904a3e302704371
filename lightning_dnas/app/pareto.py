"""The Pareto tool: read the ``results.json`` of one or more sweeps, average and mark fronts.

``python -m lightning_dnas.pareto <sweep dir> [...] [--cost params|macs] [--metric acc]
[--split test|val] [--direction max|min] [--out DIR] [--wandb]``

Grouping follows the thesis protocol (SPEC section 6): runs of one ``(method, search_id)``
are fine-tune seeds of one searched architecture and are averaged (mean and sample std of
the metric) into a :class:`Group`. Searches that share the whole configuration but not the
full-pipeline ``seed`` are averaged again into a :class:`SeedGroup`, reported separately.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from .front import maximize_metric, pareto_mask
from .pareto_output import markdown, write_outputs
from .results import Point, ResultsError, RunResult

DEFAULT_METRIC = {"classification": "acc", "anomaly": "auc"}


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
    ``pareto_method``: on the front of its method's groups."""

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
    pareto: bool = False
    pareto_method: bool = False

    def cost(self, name: str) -> float:
        """``params`` or ``macs``."""
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
    pareto: bool = False
    pareto_method: bool = False

    def cost(self, name: str) -> float:
        """Mean ``params`` or ``macs`` over seeds."""
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


def load_sweeps(sweep_dirs: Sequence[str | Path]) -> tuple[list[LoadedRun], list[str]]:
    """Every readable ``results.json`` under each sweep dir (recursively, e.g. Hydra's
    ``<sweep>/<job>/results.json``) and one message per unreadable file. Raises
    :class:`ParetoError` if a sweep dir is missing or holds no readable result."""
    runs: list[LoadedRun] = []
    skipped: list[str] = []
    seen: set[Path] = set()
    for sweep in sweep_dirs:
        root = Path(sweep)
        if not root.is_dir():
            raise ParetoError(f"{root}: not a directory")
        readable, unreadable = 0, []
        for path in sorted(root.rglob("results.json")):
            try:
                result = RunResult.load(path)
            except ResultsError as err:
                unreadable.append(str(err))
                continue
            readable += 1
            # Overlapping sweep dirs must not count a run twice.
            if path.resolve() not in seen:
                seen.add(path.resolve())
                runs.append(LoadedRun(path, str(sweep), result))
        if not readable:
            detail = (
                f": {len(unreadable)} unreadable: " + "; ".join(unreadable) if unreadable else ""
            )
            raise ParetoError(f"{root}: no readable results.json under it{detail}")
        skipped += unreadable
    return runs, skipped


def format_lambdas(lambdas: dict[str, dict[str, float]]) -> str:
    """``{"supernet": {"params": 3e-6}}`` -> ``"supernet.params=3e-06"`` (stages in order,
    space separated); ``"-"`` when there is none (the seed model)."""
    items = [
        f"{stage}.{cost}={value:g}"
        for stage, costs in lambdas.items()
        for cost, value in costs.items()
    ]
    return " ".join(items) or "-"


def analyse(
    sweep_dirs: Sequence[str | Path],
    *,
    cost: str = "params",
    metric: str | None = None,
    split: str = "test",
    maximize: bool | None = None,
) -> ParetoReport:
    """Load the sweeps and build the report. ``metric`` defaults to ``acc`` for
    classification and ``auc`` for anomaly runs; ``maximize`` defaults to the metric's
    direction (:func:`~lightning_dnas.app.front.maximize_metric`)."""
    if cost not in ("params", "macs"):
        raise ParetoError(f"cost must be params or macs, not {cost!r}")
    runs, skipped = load_sweeps(sweep_dirs)
    if metric is None:
        tasks = sorted({run.result.task for run in runs})
        if len(tasks) > 1:
            raise ParetoError(f"the runs mix tasks ({', '.join(tasks)}): choose --metric")
        metric = DEFAULT_METRIC[tasks[0]]
    maximize = maximize_metric(metric) if maximize is None else maximize

    usable = []
    for run in runs:
        metrics = getattr(run.result.final, split)
        if metric in metrics:
            usable.append(run)
        else:
            skipped.append(
                f"{run.path}: no {split} metric {metric!r} (has {', '.join(metrics) or 'none'})"
            )
    if not usable:
        found = sorted({m for run in runs for m in getattr(run.result.final, split)})
        raise ParetoError(
            f"no run reports a {split} metric {metric!r} (found: {', '.join(found) or 'none'})"
        )

    warnings: list[str] = []
    by_search: dict[tuple[str, str], list[LoadedRun]] = defaultdict(list)
    for run in usable:
        by_search[run.result.method, run.result.search_id].append(run)
    groups = [_group(members, metric, split, warnings) for members in by_search.values()]
    seed_groups = _seed_groups(list(by_search.values()), groups)

    def order(g: Group | SeedGroup) -> tuple:
        return g.method, g.cost(cost), g.lambdas

    return ParetoReport(
        sweeps=tuple(str(s) for s in sweep_dirs),
        cost=cost,
        metric=metric,
        split=split,
        maximize=maximize,
        groups=sorted(_marked(groups, cost, maximize), key=order),
        seed_groups=sorted(_marked(seed_groups, cost, maximize), key=order),
        references=_references(usable, metric, split, warnings),
        skipped=skipped,
        warnings=warnings,
    )


def _std(values: Sequence[float]) -> float | None:
    return statistics.stdev(values) if len(values) > 1 else None


def _group(members: list[LoadedRun], metric: str, split: str, warnings: list[str]) -> Group:
    first = members[0].result
    values = [getattr(run.result.final, split)[metric] for run in members]
    costs = {}
    for name in ("params", "macs"):
        counts = [getattr(run.result.final, name) for run in members]
        if len(set(counts)) > 1:
            warnings.append(
                f"{first.method} search {first.search_id}: fine-tune runs differ in {name} "
                f"({', '.join(map(str, counts))}); using the mean"
            )
        costs[name] = counts[0] if len(set(counts)) == 1 else statistics.fmean(counts)
    ft_seeds = [run.result.finetune_seed for run in members]
    if len(set(ft_seeds)) < len(ft_seeds):
        warnings.append(
            f"{first.method} search {first.search_id}: repeated fine-tune seeds "
            f"{ft_seeds} (the same run read twice?)"
        )
    return Group(
        method=first.method,
        lambdas=format_lambdas(first.lambdas),
        search_id=first.search_id,
        seed=first.seed,
        data=first.data,
        model=first.model,
        sweep=members[0].sweep,
        mean=statistics.fmean(values),
        std=_std(values),
        n=len(values),
        finetune_seeds=tuple(sorted(ft_seeds, key=lambda s: (s is None, s or 0))),
        **costs,
    )


def _seed_groups(searches: list[list[LoadedRun]], groups: list[Group]) -> list[SeedGroup]:
    """Searches (one Group each) of one configuration that differ only in the seed."""
    by_config: dict[str, list[Group]] = defaultdict(list)
    for members, group in zip(searches, groups, strict=True):
        r = members[0].result
        config = [r.method, r.data, r.model, r.lambdas, r.icv, r.softmax]
        by_config[json.dumps(config, sort_keys=True)].append(group)
    seed_groups = []
    for same in by_config.values():
        params = [g.params for g in same]
        macs = [g.macs for g in same]
        means = [g.mean for g in same]
        seed_groups.append(
            SeedGroup(
                method=same[0].method,
                lambdas=same[0].lambdas,
                data=same[0].data,
                model=same[0].model,
                params_mean=statistics.fmean(params),
                params_std=_std(params),
                macs_mean=statistics.fmean(macs),
                macs_std=_std(macs),
                mean=statistics.fmean(means),
                std=_std(means),
                n=len(same),
                seeds=tuple(sorted(g.seed for g in same)),
            )
        )
    return seed_groups


def _references(
    runs: list[LoadedRun], metric: str, split: str, warnings: list[str]
) -> list[Reference]:
    """Every run repeats its seed model's record: average the distinct ones per model."""
    distinct: dict[tuple[str, str], dict[str, Point]] = defaultdict(dict)
    for run in runs:
        ref = run.result.reference
        key = json.dumps(dataclasses.asdict(ref), sort_keys=True)
        distinct[run.result.data, run.result.model][key] = ref
    references = []
    for (data, model), records in distinct.items():
        points = [p for p in records.values() if metric in getattr(p, split)]
        if not points:
            warnings.append(f"seed model {data}/{model}: no {split} metric {metric!r}")
            continue
        values = [getattr(p, split)[metric] for p in points]
        references.append(
            Reference(
                data=data,
                model=model,
                params=statistics.fmean(p.params for p in points),
                macs=statistics.fmean(p.macs for p in points),
                mean=statistics.fmean(values),
                std=_std(values),
                n=len(values),
            )
        )
    return references


G = TypeVar("G", Group, SeedGroup)


def _marked(items: list[G], cost: str, maximize: bool) -> list[G]:
    """``items`` with ``pareto`` (front of all) and ``pareto_method`` (front of its method)."""

    def front(subset: list[G]) -> list[bool]:
        # Rounded: means that are equal on paper (.90/.92 vs .91/.91) differ in the last bit.
        return pareto_mask([(g.cost(cost), round(g.mean, 12)) for g in subset], maximize)

    per_method: dict[int, bool] = {}
    for method in {g.method for g in items}:
        idx = [i for i, g in enumerate(items) if g.method == method]
        per_method.update(zip(idx, front([items[i] for i in idx]), strict=True))
    return [
        dataclasses.replace(g, pareto=every, pareto_method=per_method[i])
        for i, (g, every) in enumerate(zip(items, front(items), strict=True))
    ]


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m lightning_dnas.pareto``."""
    parser = argparse.ArgumentParser(
        prog="python -m lightning_dnas.pareto",
        description="Average sweeps' results.json over fine-tune seeds, mark the Pareto "
        "fronts, write pareto.csv, pareto_seeds.csv, pareto.md and pareto.png.",
    )
    parser.add_argument("sweeps", nargs="+", type=Path, help="sweep directories (overlaid)")
    parser.add_argument("--cost", choices=("params", "macs"), default="params")
    parser.add_argument("--metric", help="metric name (default: acc, or auc for anomaly)")
    parser.add_argument("--split", choices=("test", "val"), default="test")
    parser.add_argument(
        "--direction",
        choices=("max", "min"),
        help="override the metric's direction (default: from its name)",
    )
    parser.add_argument(
        "--out", type=Path, help="output directory (default: the sweep dir; required for several)"
    )
    parser.add_argument(
        "--wandb",
        action="store_true",
        help="also log the table and plots to a W&B run (offline unless WANDB_MODE says otherwise)",
    )
    parser.add_argument("--wandb-project", default="lightning_dnas")
    parser.add_argument("--wandb-group", default=None)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the tool; returns the exit status (2 on bad input, with a one-line error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.out is None and len(args.sweeps) > 1:
        parser.error("--out is required with several sweep dirs")
    maximize = None if args.direction is None else args.direction == "max"
    try:
        report = analyse(
            args.sweeps, cost=args.cost, metric=args.metric, split=args.split, maximize=maximize
        )
        paths = write_outputs(
            report,
            args.out or args.sweeps[0],
            wandb=args.wandb,
            project=args.wandb_project,
            group=args.wandb_group,
        )
    except (ParetoError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as err:  # --wandb without the optional extra
        print(f"error: {err}: pip install 'lightning_dnas[wandb]'", file=sys.stderr)
        return 2
    for message in report.skipped:
        print(f"skipped: {message}", file=sys.stderr)
    for message in report.warnings:
        print(f"warning: {message}", file=sys.stderr)
    print(markdown(report))
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0
