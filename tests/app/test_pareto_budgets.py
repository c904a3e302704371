"""The Pareto tool on budget sweeps and memory costs, from synthetic results files: the
front follows the chosen cost, each distinct budget of the plotted cost is a vertical line
in the PNG and a column in the tables, and budgets split configurations."""

from __future__ import annotations

from lightning_dnas.app.pareto.analysis import build_report
from lightning_dnas.app.pareto.output import figure, markdown

from .runs import make_run, write_sweep


def _sweep(tmp_path):
    # a: cheap in params, costly in peak RAM; b: the reverse; c: dominated in both.
    runs = [
        make_run(search_id="a", params=400, metrics={"acc": 0.9}, flash=600, peak_ram=2000,
                 budgets={"params": 500}),
        make_run(search_id="b", params=800, metrics={"acc": 0.9}, flash=1000, peak_ram=900,
                 budgets={"params": 1000}),
        make_run(search_id="c", params=900, metrics={"acc": 0.8}, flash=1100, peak_ram=2500,
                 budgets={"params": 1000, "peak_ram": 3000}),
    ]  # fmt: skip
    return write_sweep(tmp_path / "sweep", runs)


def _budget_lines(report) -> list[float]:
    return sorted(line.get_xdata()[0] for line in figure(report).axes[0].lines
                  if line.get_label().startswith("budget "))  # fmt: skip


def test_the_front_follows_the_memory_cost(tmp_path):
    sweep = _sweep(tmp_path)
    marks = lambda cost: {g.search_id: g.pareto for g in build_report([sweep], cost=cost).groups}  # noqa: E731
    assert marks("params") == {"a": True, "b": False, "c": False}
    assert marks("peak_ram") == {"a": False, "b": True, "c": False}
    assert marks("flash") == {"a": True, "b": False, "c": False}


def test_one_vertical_line_per_distinct_budget_of_the_plotted_cost(tmp_path):
    sweep = _sweep(tmp_path)
    assert _budget_lines(build_report([sweep], cost="params")) == [500.0, 1000.0]
    assert _budget_lines(build_report([sweep], cost="peak_ram")) == [3000.0]
    assert _budget_lines(build_report([sweep], cost="macs")) == []  # no MACs budget


def test_budgets_are_a_column_and_split_configurations(tmp_path):
    report = build_report([_sweep(tmp_path)], cost="peak_ram")
    assert len(report.seed_groups) == 3  # same lambdas and seed, three budgets
    md = markdown(report)
    assert "| method | lambdas | budget | seed | params | MACs | peak_ram B |" in md
    assert "| pit | pit.params=1e-06 | params<=1000 peak_ram<=3000 | 0 | 900 | 9000 | 2500 |" in md
