"""The application with ``logger=wandb`` (offline): one W&B run per application run holding
the resolved config, the callback's search metrics and the final numbers in its summary;
the runs of a multirun share a group and each job gets its own run."""

from __future__ import annotations

from pathlib import Path

import pytest

from lightning_dnas.app.results import RunResult
from lightning_dnas.app.train import main

from ..wandb_records import read_run
from .test_train import TINY

wandb = pytest.importorskip("wandb")




def _runs(root: Path):
    wandb.teardown()  # flushes the offline logs (finish may return before they are written)
    return {p.parent.parent.name: read_run(p) for p in root.glob("**/wandb/offline-run-*")}


def test_one_wandb_run_per_app_run_with_config_metrics_and_summary(wandb_offline):
    run_dir = wandb_offline / "run"
    main([*TINY, "method=pit", "logger=wandb", f"hydra.run.dir={run_dir}",
          f"cache_dir={wandb_offline / 'cache'}"])
    result = RunResult.load(run_dir / "results.json")
    runs = _runs(run_dir)
    assert len(runs) == 1, "every phase, the fine-tune and the reference log into one run"
    logged = next(iter(runs.values()))
    assert logged.config["method"]["name"] == "pit"
    assert logged.config["seed"] == 0 and logged.config["cost"] == "params"
    assert logged.series("dnas/reg_step") and logged.series("dnas/hard_params")
    assert logged.summary["final/params"] == result.final.params
    assert logged.summary["final/test_acc"] == pytest.approx(result.final.test["acc"])
    assert logged.summary["reference/params"] == result.reference.params


def test_multirun_jobs_share_a_group_and_get_their_own_runs(wandb_offline):
    sweep = wandb_offline / "sweep"
    main(["-m", *TINY, "method=pit", "logger=wandb", "method.strength=1e-6,1e-4",
          f"hydra.sweep.dir={sweep}", f"cache_dir={wandb_offline / 'cache'}"])
    runs = _runs(sweep)
    assert len(runs) == 2
    groups = set()
    for logged in runs.values():
        record = next(r for r in _records(logged.root) if r.WhichOneof("record_type") == "run")
        groups.add(record.run.run_group)
    assert groups == {"sweep"}
    assert sorted(r.config["method"]["strength"] for r in runs.values()) == [1e-6, 1e-4]


def _records(root: Path):
    from ..wandb_records import records

    return records(next(root.glob("run-*.wandb")))
