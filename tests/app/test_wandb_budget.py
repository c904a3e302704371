"""The application's W&B run (offline) carries the budget and, for the seed and the found
network, flash, peak RAM and the operation holding the peak, as results.json has them."""

from __future__ import annotations

import pytest

from lightning_dnas.app.results import RunResult
from lightning_dnas.app.train import main

from .test_train import TINY
from .test_wandb_app import _runs

wandb = pytest.importorskip("wandb")


def test_the_summary_has_the_budget_and_the_memory_costs(wandb_offline):
    run_dir = wandb_offline / "run"
    main([*TINY, "method=pit", "logger=wandb", "budget.peak_ram=2000",
          f"hydra.run.dir={run_dir}", f"cache_dir={wandb_offline / 'cache'}"])  # fmt: skip
    result = RunResult.load(run_dir / "results.json")
    (logged,) = _runs(run_dir).values()
    summary = logged.summary
    assert summary["budget/peak_ram"] == 2000
    assert logged.series("dnas/hard_peak_ram")  # the budgeted cost joined the search's costs
    for name, point in (("final", result.final), ("reference", result.reference)):
        assert (summary[f"{name}/flash"], summary[f"{name}/peak_ram"],
                summary[f"{name}/peak_op"]) == (point.flash, point.peak_ram, point.peak_op)
    assert summary["reference/peak_ram"] == 3072 and summary["final/peak_ram"] <= 2000
