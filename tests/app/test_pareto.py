"""The Pareto tool on hand-made sweeps: groups, marks, CSV/Markdown/PNG, CLI, W&B offline."""

import csv
import itertools
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lightning_dnas.app.pareto.analysis import build_report
from lightning_dnas.app.pareto.cli import main
from lightning_dnas.app.pareto.front import maximize_metric, pareto_mask
from lightning_dnas.app.pareto.model import ParetoError
from lightning_dnas.app.pareto.output import GROUP_COLUMNS, group_rows, write_outputs
from tests.app.runs import make_run, write_sweep

ROOT = Path(__file__).resolve().parents[2]
CASCADE = {"supernet": {"params": 3e-6}, "pit": {"params": 1e-6}}


def ft_runs(search_id, params, accs, **kwargs):
    """One searched architecture fine-tuned with seeds 0, 1, ... to test accuracies accs."""
    return [
        make_run(search_id=search_id, params=params, metrics={"acc": a}, finetune_seed=i,
                 **kwargs)
        for i, a in enumerate(accs)
    ]  # fmt: skip


@pytest.fixture
def sweep_a(tmp_path):
    """PIT and SuperNet points (params, test acc per fine-tune seed) and two bad files.

    Hand-computed: s1 mean .92 std .02; s2 .89 std sqrt(2e-4); s3 .85 (one run, dominated
    by s2); s4 .91 std 0 and s5 .91: a tie, both optimal; s6 .915 is on the SuperNet front
    but dominated by s1 overall."""
    runs = (
        ft_runs("s1", 1000, [0.90, 0.92, 0.94], lambdas={"pit": {"params": 1e-6}})
        + ft_runs("s2", 500, [0.88, 0.90], lambdas={"pit": {"params": 5e-6}})
        + ft_runs("s3", 600, [0.85], lambdas={"pit": {"params": 1e-5}})
        + ft_runs("s4", 800, [0.91, 0.91], method="supernet",
                  lambdas={"supernet": {"params": 3e-6}})
        + ft_runs("s5", 800, [0.91], method="supernet", lambdas={"supernet": {"params": 7e-6}})
        + ft_runs("s6", 1200, [0.915], method="supernet",
                  lambdas={"supernet": {"params": 1e-6}})
    )  # fmt: skip
    root = write_sweep(tmp_path / "sweep_a", runs)
    (root / "90").mkdir()
    (root / "90" / "results.json").write_text("{not json")
    (root / "91").mkdir()
    data = runs[0].to_dict()
    del data["final"]
    (root / "91" / "results.json").write_text(json.dumps(data))
    return root


@pytest.fixture
def sweep_b(tmp_path):
    """A cascade configuration searched with full-pipeline seeds 0 and 1 (own search ids):
    seed 0 -> 400 params, acc .90/.92 (mean .91); seed 1 -> 420 params, .86/.88 (.87)."""
    runs = ft_runs("c0", 400, [0.90, 0.92], method="cascade", lambdas=CASCADE, seed=0) + ft_runs(
        "c1", 420, [0.86, 0.88], method="cascade", lambdas=CASCADE, seed=1
    )
    return write_sweep(tmp_path / "sweep_b", runs)


def by_id(report):
    return {g.search_id: g for g in report.groups}


def test_groups_average_finetune_seeds(sweep_a):
    report = build_report([sweep_a])
    groups = by_id(report)
    assert report.metric == "acc" and report.maximize and report.split == "test"
    assert groups["s1"].mean == pytest.approx(0.92)
    assert groups["s1"].std == pytest.approx(0.02)
    assert groups["s1"].n == 3 and groups["s1"].finetune_seeds == (0, 1, 2)
    assert groups["s2"].mean == pytest.approx(0.89)
    assert groups["s2"].std == pytest.approx(math.sqrt(2e-4))
    assert groups["s3"].std is None and groups["s3"].n == 1
    assert groups["s4"].std == 0.0
    assert (groups["s1"].params, groups["s1"].macs) == (1000, 10000)
    assert groups["s2"].lambdas == "pit.params=5e-06"
    # Sorted by method, then cost.
    assert [g.search_id for g in report.groups] == ["s2", "s3", "s1", "s4", "s5", "s6"]
    assert report.warnings == []


def test_pareto_marks(sweep_a):
    groups = by_id(build_report([sweep_a]))
    marks = {k: (g.pareto, g.pareto_method) for k, g in groups.items()}
    assert marks == {
        "s1": (True, True),
        "s2": (True, True),
        "s3": (False, False),  # 600 params, .85: s2 is cheaper and better
        "s4": (True, True),  # tie with s5: neither dominates
        "s5": (True, True),
        "s6": (False, True),  # best SuperNet, but s1 is cheaper and better
    }


def test_marks_follow_the_cost(tmp_path):
    """(params, MACs, acc): m1 (1000, 5000, .9), m2 (600, 100, .85), m3 (2000, 50, .8):
    m3 is dominated by params but the cheapest by MACs."""
    runs = (
        ft_runs("m1", 1000, [0.9], macs=5000)
        + ft_runs("m2", 600, [0.85], macs=100)
        + ft_runs("m3", 2000, [0.8], macs=50)
    )
    root = write_sweep(tmp_path / "macs", runs)
    by_params = build_report([root], cost="params")
    by_macs = build_report([root], cost="macs")
    assert [(g.search_id, g.pareto) for g in by_params.groups] == [
        ("m2", True), ("m1", True), ("m3", False)]  # fmt: skip
    assert [(g.search_id, g.pareto) for g in by_macs.groups] == [
        ("m3", True), ("m2", True), ("m1", True)]  # fmt: skip


def test_skipped_files_are_reported(sweep_a):
    skipped = build_report([sweep_a]).skipped
    assert len(skipped) == 2
    assert (
        skipped[0].startswith(str(sweep_a / "90" / "results.json")) and "cannot read" in skipped[0]
    )
    assert "missing key `final`" in skipped[1]


def test_single_point(tmp_path):
    root = write_sweep(tmp_path / "one", ft_runs("only", 300, [0.7]))
    (group,) = build_report([root]).groups
    assert (group.mean, group.std, group.n, group.pareto, group.pareto_method) == (
        0.7, None, 1, True, True)  # fmt: skip


@pytest.fixture
def anomaly(tmp_path):
    """AD runs: (params, mse) = (100, .5), (200, .4), (300, .45); AUC rises with cost."""
    ref = make_run(search_id="r", params=1, metrics={}).reference
    runs = [
        make_run(search_id=f"a{p}", params=p, task="anomaly", metrics={"mse": m, "auc": auc},
                 reference=ref)
        for p, m, auc in [(100, 0.5, 0.8), (200, 0.4, 0.85), (300, 0.45, 0.9)]
    ]  # fmt: skip
    return write_sweep(tmp_path / "ad", runs)


def test_mse_is_minimised(anomaly):
    report = build_report([anomaly], metric="mse")
    assert not report.maximize
    assert [g.pareto for g in report.groups] == [True, True, False]
    # Overriding the direction: the cheapest point dominates both others.
    report = build_report([anomaly], metric="mse", maximize=True)
    assert [g.pareto for g in report.groups] == [True, False, False]


def test_anomaly_default_metric_is_auc(anomaly):
    report = build_report([anomaly])
    assert report.metric == "auc" and report.maximize
    assert [g.pareto for g in report.groups] == [True, True, True]
    assert report.references == []  # the seed model has no AUC: warned, not plotted
    assert report.warnings == ["seed model mnist1d/cnn: no test metric 'auc'"]


def test_metric_direction_from_name():
    assert maximize_metric("acc") and maximize_metric("auc") and maximize_metric("f1")
    assert not any(maximize_metric(n) for n in ("mse", "loss", "val_loss", "MAE", "error"))


def test_full_pipeline_seeds(sweep_b):
    report = build_report([sweep_b])
    assert [g.search_id for g in report.groups] == ["c0", "c1"]
    (seeds,) = report.seed_groups
    assert seeds.method == "cascade" and seeds.seeds == (0, 1) and seeds.n == 2
    assert seeds.lambdas == "supernet.params=3e-06 pit.params=1e-06"
    assert seeds.mean == pytest.approx(0.89)
    assert seeds.std == pytest.approx(math.sqrt(2) * 0.02)
    assert seeds.params_mean == 410 and seeds.params_std == pytest.approx(math.sqrt(200))
    assert seeds.macs_mean == 4100
    assert seeds.pareto and seeds.pareto_method


def test_cost_mismatch_in_a_group_warns(tmp_path):
    runs = [make_run(search_id="x", params=p, metrics={"acc": 0.5}, finetune_seed=i)
            for i, p in enumerate([100, 110])]  # fmt: skip
    report = build_report([write_sweep(tmp_path / "mix", runs)])
    assert report.groups[0].params == 105
    assert report.warnings == [
        "pit search x: fine-tune runs differ in params (100, 110); using the mean",
        "pit search x: fine-tune runs differ in macs (1000, 1100); using the mean",
    ]


def test_reference_is_averaged_over_distinct_records(sweep_a):
    (ref,) = build_report([sweep_a]).references
    assert (ref.data, ref.model, ref.params, ref.macs, ref.mean, ref.n) == (
        "mnist1d", "cnn", 2000, 20000, 0.93, 1)  # fmt: skip


def read_csv(path):
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_outputs_of_two_overlaid_sweeps(sweep_a, sweep_b, tmp_path):
    report = build_report([sweep_a, sweep_b], cost="params")
    paths = write_outputs(report, tmp_path / "out")
    rows = read_csv(paths["csv"])
    assert [r["search_id"] for r in rows] == ["c0", "c1", "s2", "s3", "s1", "s4", "s5", "s6"]
    assert rows[4] == {
        "method": "pit", "lambdas": "pit.params=1e-06", "search_id": "s1", "seed": "0",
        "data": "mnist1d", "model": "cnn", "sweep": str(sweep_a), "budgets": "-",
        "params": "1000", "macs": "10000", "flash": "", "peak_ram": "",  # not recorded
        "cost": "params", "metric": "acc", "split": "test",
        "mean": rows[4]["mean"], "std": rows[4]["std"], "n": "3", "finetune_seeds": "0;1;2",
        "pareto": "True", "pareto_method": "True",
    }  # fmt: skip
    assert float(rows[4]["mean"]) == pytest.approx(0.92)
    assert float(rows[4]["std"]) == pytest.approx(0.02)
    assert rows[3]["std"] == ""  # s3: one run
    # c0 (400 params, .91) now dominates s2 (500, .89) and s4/s5 (800, .91).
    assert [r["pareto"] for r in rows] == ["True", "False", "False", "False", "True", "False",
                                           "False", "False"]  # fmt: skip
    seeds = read_csv(paths["seeds_csv"])
    assert (seeds[0]["method"], seeds[0]["n"], seeds[0]["seeds"]) == ("cascade", "2", "0;1")
    assert len(seeds) == 7  # the cascade configuration + six single-seed searches

    md = paths["md"].read_text()
    assert md.startswith("# Pareto front: acc (test) vs params\n")
    assert "| method | lambdas | seed | params | MACs | acc (test) | n | Pareto |" in md
    assert "| pit | pit.params=1e-06 | 0 | 1000 | 10000 | 0.9200 ± 0.0200 | 3 | all |" in md
    assert "| pit | pit.params=1e-05 | 0 | 600 | 6000 | 0.8500 | 1 |  |" in md
    assert ("| cascade | supernet.params=3e-06 pit.params=1e-06 | 410 ± 14.1 | 4100 ± 141.4 "
            "| 0.8900 ± 0.0283 | 2 | all |") in md  # fmt: skip
    assert "| mnist1d | cnn | 2000 | 20000 | 0.9300 | 1 |" in md
    assert "## Skipped" in md and "cannot read" in md

    image = matplotlib.image.imread(paths["png"])
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert image.shape[0] > 100 and image.shape[1] > 100


def test_main_as_function(sweep_a, capsys):
    assert main([str(sweep_a), "--cost", "macs"]) == 0
    out, err = capsys.readouterr()
    assert "# Pareto front: acc (test) vs macs" in out
    assert err.count("skipped: ") == 2
    assert {p.name for p in sweep_a.glob("pareto*")} == {
        "pareto.csv", "pareto_seeds.csv", "pareto.md", "pareto.png"}  # fmt: skip


def test_main_needs_out_for_several_sweeps(sweep_a, sweep_b, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([str(sweep_a), str(sweep_b)])
    assert exit_.value.code == 2
    assert "--out is required" in capsys.readouterr().err


def test_mixed_tasks_need_a_metric(sweep_a, anomaly, tmp_path, capsys):
    assert main([str(sweep_a), str(anomaly), "--out", str(tmp_path / "o")]) == 2
    assert "mix tasks (anomaly, classification): choose --metric" in capsys.readouterr().err


def cli(*args, **env):
    return subprocess.run(
        [sys.executable, "-m", "lightning_dnas.pareto", *map(str, args)],
        cwd=ROOT, capture_output=True, text=True, timeout=60, env={**os.environ, **env},
    )  # fmt: skip


def test_cli_subprocess(sweep_a, sweep_b, tmp_path):
    out = tmp_path / "figs"
    done = cli(sweep_a, sweep_b, "--out", out, "--metric", "acc", "--direction", "max")
    assert done.returncode == 0, done.stderr
    assert "| cascade | supernet.params=3e-06 pit.params=1e-06 | 0 | 400 |" in done.stdout
    assert f"png: {out / 'pareto.png'}" in done.stdout
    assert [r["search_id"] for r in read_csv(out / "pareto.csv")][:2] == ["c0", "c1"]


def test_cli_no_results_is_an_error(tmp_path):
    (tmp_path / "empty" / "0").mkdir(parents=True)
    done = cli(tmp_path / "empty")
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: {tmp_path / 'empty'}: no readable results.json under it"
    assert not (tmp_path / "empty" / "pareto.csv").exists()


def test_only_unreadable_results_is_an_error(tmp_path):
    write_sweep(tmp_path / "one", ft_runs("only", 300, [0.7]))
    (tmp_path / "bad" / "0").mkdir(parents=True)
    (tmp_path / "bad" / "0" / "results.json").write_text("[]")
    with pytest.raises(ParetoError, match=r"1 unreadable: .*`top level` must be an object"):
        build_report([tmp_path / "bad"])
    with pytest.raises(ParetoError, match=r"no run reports a val metric 'f1' \(found: acc\)"):
        build_report([tmp_path / "one"], metric="f1", split="val")
    with pytest.raises(ParetoError, match="not a directory"):
        build_report([tmp_path / "missing"])


def test_wandb_offline(sweep_a, tmp_path, wandb_offline):
    wandb = pytest.importorskip("wandb")
    report = build_report([sweep_a])
    paths = write_outputs(report, tmp_path / "out", wandb=True, project="p", group="sweep_a")
    run_dir = paths["wandb"]
    assert run_dir.parent == tmp_path / "out" / "wandb" and run_dir.name.startswith("offline-run")
    (table_file,) = (run_dir / "files" / "media" / "table").glob("pareto_*.table.json")
    table = json.loads(table_file.read_text())
    assert table["columns"] == GROUP_COLUMNS
    assert table["data"] == json.loads(json.dumps(group_rows(report)))
    s1 = dict(zip(GROUP_COLUMNS, table["data"][2], strict=True))
    assert s1["search_id"] == "s1" and s1["mean"] == pytest.approx(0.92) and s1["n"] == 3
    assert list((run_dir / "files" / "media" / "images").glob("pareto_plot_*.png"))
    # The scatter chart and the group are in the run's binary log, which wandb 0.31 may still
    # be writing after finish() returns (seen under load): stopping the service flushes it.
    wandb.teardown()
    log = next(run_dir.glob("run-*.wandb")).read_bytes()
    assert b"pareto_scatter_table" in log and b"wandb/scatter/v0" in log and b"sweep_a" in log


def brute_force(points, maximize):
    sign = 1 if maximize else -1

    def dominates(q, p):
        no_worse = q[0] <= p[0] and sign * q[1] >= sign * p[1]
        return no_worse and (q[0] < p[0] or sign * q[1] > sign * p[1])

    return [not any(dominates(q, p) for q in points) for p in points]


@given(
    st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), max_size=25)
    | st.lists(st.tuples(st.floats(0, 1e6), st.floats(-1, 1)), max_size=25),
    st.booleans(),
)
def test_pareto_mask_equals_brute_force(points, maximize):
    assert pareto_mask(points, maximize) == brute_force(points, maximize)


def test_pareto_mask_small_cases():
    assert pareto_mask([]) == []
    assert pareto_mask([(1, 0.5)]) == [True]
    assert pareto_mask([(1, 0.5), (1, 0.5)]) == [True, True]
    assert pareto_mask([(1, 0.5), (1, 0.6), (2, 0.6)]) == [False, True, False]
    assert pareto_mask([(1, 0.5), (2, 0.4)], maximize=False) == [True, True]
    for perm in itertools.permutations([(1, 0.5), (2, 0.7), (3, 0.6)]):
        assert pareto_mask(list(perm)) == [p != (3, 0.6) for p in perm]


def test_wandb_missing_is_a_clear_error(sweep_a, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb now fails
    assert main([str(sweep_a), "--wandb"]) == 2
    assert "pip install 'lightning_dnas[wandb]'" in capsys.readouterr().err
