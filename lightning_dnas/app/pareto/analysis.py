"""Loading sweeps and grouping their runs (SPEC section 6's protocol): fine-tune seeds of
one search averaged into a :class:`Group`, full-pipeline seeds of one configuration into a
:class:`SeedGroup`, fronts marked."""

from __future__ import annotations

import dataclasses
import json
import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

from ..results import Point, ResultsError, RunResult
from .front import maximize_metric, pareto_mask
from .model import (
    COSTS,
    DEFAULT_METRIC,
    Group,
    LoadedRun,
    ParetoError,
    ParetoReport,
    Reference,
    SeedGroup,
)

# Recorded by the application since it measured memory; None in older results files.
MEMORY = ("flash", "peak_ram")


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


def build_report(
    sweep_dirs: Sequence[str | Path],
    *,
    cost: str = "params",
    metric: str | None = None,
    split: str = "test",
    maximize: bool | None = None,
) -> ParetoReport:
    """Load the sweeps and build the report. ``metric`` defaults to ``acc`` for
    classification and ``auc`` for anomaly runs; ``maximize`` defaults to the metric's
    direction (:func:`~lightning_dnas.app.pareto.front.maximize_metric`)."""
    if cost not in COSTS:
        raise ParetoError(f"cost must be one of {', '.join(COSTS)}, not {cost!r}")
    runs, skipped = load_sweeps(sweep_dirs)
    if cost in MEMORY:
        runs, older = _with_cost(runs, cost)
        skipped += older
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
    for name in COSTS:
        counts = [getattr(run.result.final, name) for run in members]
        if None in counts:  # a memory cost an older file lacks: not on this group
            costs[name] = None
            continue
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
        budgets=dict(first.budgets),
        **costs,
    )


def _with_cost(runs: list[LoadedRun], cost: str) -> tuple[list[LoadedRun], list[str]]:
    """The runs whose final network has ``cost`` recorded, and one message per older one."""
    kept = [run for run in runs if getattr(run.result.final, cost) is not None]
    if not kept:
        raise ParetoError(f"no run records the found network's {cost} (results.json written "
                          f"before the application measured memory costs): run them again")
    return kept, [f"{run.path}: no final.{cost} (written before the application recorded "
                  f"memory costs); left out of the {cost} front"
                  for run in runs if getattr(run.result.final, cost) is None]


def _mean_std(values: list[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample std, ``(None, None)`` when a value is missing (an older file)."""
    if None in values:
        return None, None
    return statistics.fmean(values), _std(values)  # type: ignore[arg-type]


def _seed_groups(searches: list[list[LoadedRun]], groups: list[Group]) -> list[SeedGroup]:
    """Searches (one Group each) of one configuration that differ only in the seed."""
    by_config: dict[str, list[Group]] = defaultdict(list)
    for members, group in zip(searches, groups, strict=True):
        r = members[0].result
        # the budget: searches of different budgets are different configurations
        config = [r.method, r.data, r.model, r.lambdas, r.icv, r.softmax, r.budgets]
        by_config[json.dumps(config, sort_keys=True)].append(group)
    seed_groups = []
    for same in by_config.values():
        params = [g.params for g in same]
        macs = [g.macs for g in same]
        means = [g.mean for g in same]
        flash = _mean_std([g.flash for g in same])
        peak = _mean_std([g.peak_ram for g in same])
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
                flash_mean=flash[0],
                flash_std=flash[1],
                peak_ram_mean=peak[0],
                peak_ram_std=peak[1],
                budgets=dict(same[0].budgets),
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
                flash=_mean_std([p.flash for p in points])[0],
                peak_ram=_mean_std([p.peak_ram for p in points])[0],
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
