"""Budgets and memory costs in the application, end to end on tiny configurations: the
found network within ``budget.<cost>``, measured again here on the exported ``model.pt``
by the engine's own ``memory_report``; the seed's memory against the hand-computed SPEC 9
values; a cascade budget sweep reusing its SuperNet phase and drawn by the Pareto tool."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from lightning_dnas import memory_report
from lightning_dnas.app.export import load_export
from lightning_dnas.app.pareto.analysis import build_report
from lightning_dnas.app.pareto.output import figure
from lightning_dnas.app.results import RunResult
from lightning_dnas.app.train import main

from .test_train import CASCADE, TINY, run

# Mnist1dTCN (1->32 k9, 3x 32->32 k9, convs bias-free, Linear 32->10): weights
# 288 + 3 * 9216 + 320 = 28,256 B at int8, plus 8 B per output channel (4 * 32 + 10 = 138)
# = 29,360 B of flash. Peak: blocks.2's pad (dilation 2, kernel 9: 16 samples) holds its
# input 32x40 and output 32x56 at once = 1,280 + 1,792 = 3,072 B.
SEED_FLASH, SEED_PEAK, SEED_PEAK_OP = 29_360, 3_072, "blocks.2.pad"


def _exported(run_dir: Path):
    """The engine's measurement of the network the run exported (model.pt, the fine-tuned
    found network, rebuilt by ``load_export``) at batch 1."""
    return memory_report(load_export(run_dir), torch.zeros(1, 1, 40))


def test_pit_budget_params_lands_within_it_and_results_record_memory(tmp_path, capsys):
    result = run(tmp_path, "method=pit", "budget.params=5000")
    out = capsys.readouterr().out
    assert result.budgets == {"params": 5000.0}
    measured = _exported(tmp_path / "run")
    assert result.final.params == measured.params <= 5000
    assert (result.final.macs, result.final.flash, result.final.peak_ram) == (
        measured.macs, measured.flash, measured.peak_ram)
    assert result.final.peak_op in dict(load_export(tmp_path / "run").named_modules())
    ref = result.reference
    assert (ref.flash, ref.peak_ram, ref.peak_op) == (SEED_FLASH, SEED_PEAK, SEED_PEAK_OP)
    table = out[out.index("seed network"):]
    (where,) = [line.split() for line in table.splitlines() if line.startswith("peak RAM at")]
    assert where[3:] == [SEED_PEAK_OP, result.final.peak_op]  # seed, found
    assert f"{SEED_FLASH:,}" in table and f"{result.final.peak_ram:,}" in table
    assert f"budget params: found {result.final.params:,} of 5,000" in table


@pytest.mark.parametrize("cost, budgets", [
    ("peak_ram", {"flash": 10_000.0}),  # a budget on another cost than the penalised one
    ("flash", {"peak_ram": 2_000.0}),
    ("params", {"macs": 300_000.0, "params": 8_000.0}),  # two at once
])  # fmt: skip
def test_budgets_on_every_cost_hold_on_the_exported_network(tmp_path, cost, budgets):
    result = run(tmp_path, "method=pit", f"cost={cost}",
                 *(f"budget.{name}={value:g}" for name, value in budgets.items()))
    assert result.budgets == budgets
    measured = _exported(tmp_path / "run")
    for name, limit in budgets.items():
        assert getattr(result.final, name) == getattr(measured, name) <= limit


def test_cascade_budget_sweep_reuses_the_supernet_phase_and_pareto_marks_the_budgets(
    tmp_path, capsys
):
    sweep = tmp_path / "sweep"
    # The tiny SuperNet phase exports a network of about 600 params: budgets below bind.
    main(["-m", *TINY, *CASCADE, "budget.params=300,450", f"hydra.sweep.dir={sweep}",
          f"cache_dir={tmp_path / 'cache'}"])  # fmt: skip
    out = capsys.readouterr().out
    assert out.count("phase supernet: computed") == 1 and out.count("phase supernet: reused") == 1
    assert out.count("phase pit: computed") == 2
    runs = [RunResult.load(p) for p in sorted(sweep.glob("*/results.json"))]
    assert sorted(r.budgets["params"] for r in runs) == [300.0, 450.0]
    assert runs[0].stages[:3] == runs[1].stages[:3]  # the same SuperNet phase
    assert runs[0].stages[2].params > 450  # so the budget bound the PIT phase
    for r in runs:
        assert r.final.params <= r.budgets["params"]
    assert runs[0].search_id != runs[1].search_id

    report = build_report([sweep], cost="params")
    assert report.budget_lines() == [300.0, 450.0]
    lines = [line.get_xdata()[0] for line in figure(report).axes[0].lines
             if line.get_label().startswith("budget params=")]
    assert sorted(lines) == [300.0, 450.0]
    assert len(report.seed_groups) == 2  # two budgets: two configurations, not two seeds
    from lightning_dnas.app.pareto.cli import main as pareto_main

    assert pareto_main([str(sweep), "--cost", "peak_ram"]) == 0
    with (sweep / "pareto.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(row["budgets"] for row in rows) == ["params<=300", "params<=450"]
    assert sorted(float(row["peak_ram"]) for row in rows) == sorted(
        float(r.final.peak_ram) for r in runs)  # fmt: skip
    assert "| budget |" in (sweep / "pareto.md").read_text()
