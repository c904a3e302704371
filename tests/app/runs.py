"""Synthetic ``results.json`` files in the Hydra multirun layout ``<sweep>/<job>/``."""

from __future__ import annotations

from pathlib import Path

from lightning_dnas.app.results import Point, RunResult, StageRecord

REFERENCE = Point(params=2000, macs=20000, val={"acc": 0.94}, test={"acc": 0.93, "loss": 0.2})


def make_run(
    *,
    search_id: str,
    params: int,
    metrics: dict[str, float],
    method: str = "pit",
    lambdas: dict[str, dict[str, float]] | None = None,
    seed: int = 0,
    finetune_seed: int | None = 0,
    macs: int | None = None,
    task: str = "classification",
    reference: Point = REFERENCE,
    budgets: dict[str, float] | None = None,
    flash: int | None = None,
    peak_ram: int | None = None,
) -> RunResult:
    """A run whose final test metrics are ``metrics``; MACs default to 10 x params; no
    budget and no memory costs (the layout of files older than them) unless given."""
    macs = 10 * params if macs is None else macs
    lambdas = {"pit": {"params": 1e-6}} if lambdas is None else lambdas
    final = Point(params=params, macs=macs, val=dict(metrics), test=dict(metrics),
                  flash=flash, peak_ram=peak_ram, peak_op=None if peak_ram is None else "conv")
    stages = [
        StageRecord("search", "search", 3, params + 100, macs + 1000, {"acc": 0.5}, {}),
        StageRecord("finetune", "finetune", 2, params, macs, final.val, final.test),
    ]
    return RunResult(
        method=method, task=task, data="mnist1d", model="cnn", lambdas=lambdas, icv=0.0,
        softmax="softmax", seed=seed, finetune_seed=finetune_seed, search_id=search_id,
        stages=stages, final=final, reference=reference, arch={"format": "x", "modules": {}},
        wall_s=1.5, budgets=dict(budgets or {}),
    )  # fmt: skip


def write_sweep(root: Path, runs: list[RunResult]) -> Path:
    """Save ``runs`` as ``root/<i>/results.json`` (i = 0, 1, ...); returns ``root``."""
    for job, run in enumerate(runs):
        (root / str(job)).mkdir(parents=True)
        run.save(root / str(job) / "results.json")
    return root
