"""Budgets and memory costs at the edges: bad ``budget.<cost>`` values refused before any
work naming the key, an infeasible budget as one line with the search space's floor,
results files of the format before budgets and memory costs, and the phases' cache keys
(only the budgeted phase's key holds the budget)."""

from __future__ import annotations

import json

import pytest
from hydra import compose, initialize_config_module

from lightning_dnas.app.budgets import search_costs
from lightning_dnas.app.pareto.cli import main as pareto_main
from lightning_dnas.app.phases import plan
from lightning_dnas.app.results import RunResult
from lightning_dnas.app.train import main

from .runs import make_run, write_sweep
from .test_train import TINY

COSTS = "['params', 'macs', 'peak_ram', 'flash']"


def _fails(tmp_path, capsys, *overrides: str) -> str:
    with pytest.raises(SystemExit) as info:
        main([*TINY, f"hydra.run.dir={tmp_path / 'run'}", f"cache_dir={tmp_path / 'cache'}",
              "method=pit", *overrides])  # fmt: skip
    assert info.value.code == 2
    assert not list(tmp_path.rglob("results.json"))
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    return captured.err


@pytest.mark.parametrize("override, message", [
    ("budget.params=0", "budget.params must be a positive finite number, got 0"),
    ("budget.macs=-5", "budget.macs must be a positive finite number, got -5"),
    ("budget.flash=inf", "budget.flash must be a positive finite number, got inf"),
    ("budget.peak_ram=small", "budget.peak_ram must be a positive number, got 'small'"),
    ("budget.params=true", "budget.params must be a positive number, got True"),
    ("budget.latency=5", f"budget.latency: 'latency' is not a cost; valid: {COSTS}"),
    ("+budget.latency=5", f"budget.latency: 'latency' is not a cost; valid: {COSTS}"),
])  # fmt: skip
def test_bad_budgets_are_refused_before_any_work(tmp_path, capsys, override, message):
    err = _fails(tmp_path, capsys, override)
    assert message in err
    assert not (tmp_path / "cache").exists()  # no phase was started


def test_an_infeasible_budget_is_one_line_with_the_floor(tmp_path, capsys):
    err = _fails(tmp_path, capsys, "budget.params=10")
    # The floor by hand: the 4 bias-free convs at 1 channel in, 1 out, 1 tap (4) and the
    # Linear 1 -> 10 with its bias (20).
    lines = [line for line in err.splitlines() if "error" in line]
    assert lines == [lines[0]] and lines[0].startswith(
        "lightning-dnas-train: error: budget.params=10 is infeasible: ")
    assert lines[0].endswith("costs 24")


def test_the_budget_is_in_the_last_phase_key_only():
    with initialize_config_module("lightning_dnas.conf", version_base="1.3"):
        cfg = compose("config", overrides=["method=cascade"])
    _, plain = plan(cfg.method)
    _, budgeted = plan(cfg.method, {"params": 5000.0})
    assert [p.name for p in budgeted] == ["supernet", "pit"]
    assert budgeted[0].to_dict() == plain[0].to_dict()  # the SuperNet phase: one key
    assert budgeted[1].to_dict() == {**plain[1].to_dict(), "budget": {"params": 5000.0}}


def test_budgeted_costs_join_the_callback_costs_after_the_penalised_one():
    assert list(search_costs("peak_ram", {"flash": 1.0, "params": 2.0})) == [
        "peak_ram", "params", "macs", "flash"]  # fmt: skip
    assert list(search_costs("params", {})) == ["params", "macs"]


OLD = {  # a results.json as written before budgets and memory costs
    "format": "lightning_dnas.results/1", "method": "pit", "task": "classification",
    "data": "mnist1d", "model": "mnist1d_tcn", "lambdas": {"pit": {"params": 1e-06}},
    "icv": 0.0, "softmax": "hard_gumbel", "seed": 0, "finetune_seed": 0,
    "search_id": "0123456789ab",
    "stages": [{"name": "pit.search", "kind": "search", "epochs": 1, "params": 900,
                "macs": 9000, "val": {"acc": 0.5}, "test": {"acc": 0.5}}],
    "final": {"params": 900, "macs": 9000, "val": {"acc": 0.5}, "test": {"acc": 0.5}},
    "reference": {"params": 28266, "macs": 1117770, "val": {"acc": 0.9},
                  "test": {"acc": 0.9}},
    "arch": None, "wall_s": 1.0,
}  # fmt: skip


def test_an_old_results_file_loads_and_pareto_skips_it_for_memory_costs(tmp_path, capsys):
    old_dir = tmp_path / "sweep" / "old"
    old_dir.mkdir(parents=True)
    (old_dir / "results.json").write_text(json.dumps(OLD))
    old = RunResult.load(old_dir / "results.json")
    assert old.budgets == {} and old.final.params == 900
    assert (old.final.flash, old.final.peak_ram, old.final.peak_op) == (None, None, None)
    assert old.to_dict() == OLD  # written back in the same layout

    assert pareto_main([str(tmp_path / "sweep"), "--cost", "flash"]) == 2
    assert "no run records the found network's flash" in capsys.readouterr().err

    write_sweep(tmp_path / "sweep" / "new", [make_run(search_id="n", params=500,
                                                      metrics={"acc": 0.6}, flash=700)])
    assert pareto_main([str(tmp_path / "sweep"), "--cost", "flash"]) == 0
    captured = capsys.readouterr()
    assert f"skipped: {old_dir / 'results.json'}: no final.flash" in captured.err
    assert "| pit | pit.params=1e-06 | 0 | 500 | 5000 | 700 | 0.6000 | 1 | all |" in captured.out
    assert pareto_main([str(tmp_path / "sweep"), "--cost", "params"]) == 0
    out = capsys.readouterr().out
    assert "| 0 | 900 | 9000 | 0.5000 |" in out and "| 0 | 500 | 5000 | 0.6000 |" in out
