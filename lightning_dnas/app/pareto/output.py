"""Writers for a :class:`~lightning_dnas.app.pareto.model.ParetoReport`: CSV, Markdown, PNG,
W&B.

Files written into the output directory:

- ``pareto.csv``: one row per searched architecture (:data:`GROUP_COLUMNS`);
- ``pareto_seeds.csv``: one row per configuration over full-pipeline seeds
  (:data:`SEED_COLUMNS`);
- ``pareto.md``: both tables and the seed model, for humans;
- ``pareto.png``: cost (log x) vs metric, one colour per method, one marker per sweep dir,
  each method's front as a step line, the seed model as a black star, and a dashed
  vertical line at each distinct budget of the plotted cost (``budget.<cost>`` runs).

In the CSVs ``std`` is empty for a single run, and ``pareto`` / ``pareto_method`` are
``True``/``False``; ``budgets`` is the runs' budget (``params<=5000``, ``-`` for none),
``flash`` / ``peak_ram`` (bytes) are empty for runs written before they were recorded.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from ..budgets import budget_label
from .model import ParetoReport

GROUP_COLUMNS = [
    "method",
    "lambdas",
    "search_id",
    "seed",
    "data",
    "model",
    "sweep",
    "budgets",
    "params",
    "macs",
    "flash",
    "peak_ram",
    "cost",
    "metric",
    "split",
    "mean",
    "std",
    "n",
    "finetune_seeds",
    "pareto",
    "pareto_method",
]
SEED_COLUMNS = [
    "method",
    "lambdas",
    "data",
    "model",
    "budgets",
    "params_mean",
    "params_std",
    "macs_mean",
    "macs_std",
    "flash_mean",
    "flash_std",
    "peak_ram_mean",
    "peak_ram_std",
    "cost",
    "metric",
    "split",
    "mean",
    "std",
    "n",
    "seeds",
    "pareto",
    "pareto_method",
]
MARKERS = "osD^vPX<>"


def _ids(values: tuple) -> str:
    return ";".join("" if v is None else str(v) for v in values)


def group_rows(report: ParetoReport) -> list[list[Any]]:
    """The rows of ``pareto.csv`` (and of the W&B table), in :data:`GROUP_COLUMNS` order."""
    fixed = {"cost": report.cost, "metric": report.metric, "split": report.split}
    return [
        [
            {
                **vars(g),
                **fixed,
                "finetune_seeds": _ids(g.finetune_seeds),
                "budgets": budget_label(g.budgets),
            }[c]
            for c in GROUP_COLUMNS
        ]
        for g in report.groups
    ]


def seed_rows(report: ParetoReport) -> list[list[Any]]:
    """The rows of ``pareto_seeds.csv``, in :data:`SEED_COLUMNS` order."""
    fixed = {"cost": report.cost, "metric": report.metric, "split": report.split}
    return [
        [
            {**vars(g), **fixed, "seeds": _ids(g.seeds), "budgets": budget_label(g.budgets)}[c]
            for c in SEED_COLUMNS
        ]
        for g in report.seed_groups
    ]


def _write_csv(path: Path, columns: list[str], rows: list[list[Any]]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows(rows)


def _count(value: float | None, std: float | None = None) -> str:
    if value is None:  # a memory cost an older results file lacks
        return "n/a"
    text = f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"
    return text if std is None else f"{text} ± {std:.1f}"


def _metric(mean: float, std: float | None) -> str:
    return f"{mean:.4f}" if std is None else f"{mean:.4f} ± {std:.4f}"


def _mark(pareto: bool, pareto_method: bool) -> str:
    return "all" if pareto else "method" if pareto_method else ""


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def markdown(report: ParetoReport) -> str:
    """``pareto.md``: the per-architecture table (method, lambdas, [budget,] seed, params,
    MACs, [the plotted memory cost,] metric mean ± sample std, n fine-tune seeds, Pareto
    mark), the full-pipeline-seed table, the seed model, then skipped files and warnings.
    The budget column is there when a run has a budget, a ``flash`` / ``peak_ram`` column
    when that is the plotted cost (older reports keep their layout)."""
    what = f"{report.metric} ({report.split})"
    budget = any(g.budgets for g in report.groups)
    memory = report.cost in ("flash", "peak_ram")
    b_head, m_head = ["budget"] * budget, [f"{report.cost} B"] * memory
    lines = [
        f"# Pareto front: {what} vs {report.cost}",
        "",
        f"Sweeps: {', '.join(report.sweeps)}. Each row is one searched architecture, its "
        f"fine-tune seeds averaged (mean ± sample std). {what} is "
        f"{'maximised' if report.maximize else 'minimised'}, {report.cost} minimised.",
        "",
    ]
    lines += _table(
        ["method", "lambdas", *b_head, "seed", "params", "MACs", *m_head, what, "n", "Pareto"],
        [
            [
                g.method,
                g.lambdas,
                *[budget_label(g.budgets)] * budget,
                str(g.seed),
                _count(g.params),
                _count(g.macs),
                *[_count(g.cost(report.cost))] * memory,
                _metric(g.mean, g.std),
                str(g.n),
                _mark(g.pareto, g.pareto_method),
            ]
            for g in report.groups
        ],
    )
    lines += [
        "",
        "Pareto: `all` = on the front of all rows, `method` = on its method's front only.",
        "",
        "## Full-pipeline seeds",
        "",
        "Each seed's search averaged over its fine-tune seeds, then mean ± sample std over seeds.",
        "",
    ]
    lines += _table(
        ["method", "lambdas", *b_head, "params", "MACs", *m_head, what, "n seeds", "Pareto"],
        [
            [
                g.method,
                g.lambdas,
                *[budget_label(g.budgets)] * budget,
                _count(g.params_mean, g.params_std),
                _count(g.macs_mean, g.macs_std),
                *[_count(g.cost(report.cost), getattr(g, f"{report.cost}_std"))] * memory,
                _metric(g.mean, g.std),
                str(g.n),
                _mark(g.pareto, g.pareto_method),
            ]
            for g in report.seed_groups
        ],
    )
    lines += ["", "## Seed model", ""]
    lines += _table(
        ["data", "model", "params", "MACs", *m_head, what, "n"],
        [
            [r.data, r.model, _count(r.params), _count(r.macs),
             *[_count(getattr(r, report.cost))] * memory, _metric(r.mean, r.std), str(r.n)]
            for r in report.references
        ],
    )  # fmt: skip
    for title, messages in (("Skipped", report.skipped), ("Warnings", report.warnings)):
        if messages:
            lines += ["", f"## {title}", ""] + [f"- {m}" for m in messages]
    return "\n".join(lines) + "\n"


def plot(report: ParetoReport, path: Path) -> None:
    """``pareto.png``: see the module docstring."""
    figure(report).savefig(path, dpi=120)


def figure(report: ParetoReport) -> Figure:
    """The figure of ``pareto.png`` (one axes)."""
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.add_subplot()
    methods = sorted({g.method for g in report.groups})
    colour = {m: f"C{i % 10}" for i, m in enumerate(methods)}
    marker = {s: MARKERS[i % len(MARKERS)] for i, s in enumerate(report.sweeps)}
    names = [Path(s).name for s in report.sweeps]
    # Short legend names unless two sweeps share one (Hydra's <date>/<time> dirs might).
    short = dict(
        zip(report.sweeps, names if len(set(names)) == len(names) else report.sweeps, strict=True)
    )
    for method in methods:
        for sweep in report.sweeps:
            points = [g for g in report.groups if g.method == method and g.sweep == sweep]
            if points:
                label = method if len(report.sweeps) == 1 else f"{method} ({short[sweep]})"
                ax.errorbar(
                    [g.cost(report.cost) for g in points],
                    [g.mean for g in points],
                    yerr=[g.std or 0.0 for g in points],
                    fmt=marker[sweep],
                    color=colour[method],
                    capsize=2,
                    label=label,
                )
        front = sorted(
            (g.cost(report.cost), g.mean)
            for g in report.groups
            if g.method == method and g.pareto_method
        )
        # where="post": a front point's metric is the best on offer up to the next one's cost.
        ax.step(*zip(*front, strict=True), where="post", color=colour[method], alpha=0.6)
    for budget in report.budget_lines():
        ax.axvline(budget, linestyle="--", color="grey", alpha=0.8,
                   label=f"budget {report.cost}={budget:g}")  # fmt: skip
    for ref in report.references:
        if getattr(ref, report.cost) is None:  # a memory cost older files lack
            continue
        ax.scatter(
            [getattr(ref, report.cost)],
            [ref.mean],
            marker="*",
            s=200,
            color="black",
            zorder=3,
            label=f"seed model ({ref.data}/{ref.model})",
        )
    ax.set_xscale("log")
    ax.set_xlabel(report.cost)
    ax.set_ylabel(f"{report.metric} ({report.split})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def log_wandb(
    report: ParetoReport, png: Path, out: Path, *, project: str, group: str | None
) -> Path:
    """Log the ``pareto.csv`` table (key ``pareto``), a W&B scatter of cost vs mean
    (``pareto_scatter``) and the PNG (``pareto_plot``) to a new W&B run under ``out``;
    offline unless ``WANDB_MODE`` is set. Returns the run directory. The media files are
    written on return; the run's binary log (``run-*.wandb``) may lag until the W&B service
    stops (process exit or ``wandb.teardown()``)."""
    import wandb  # the optional "wandb" extra

    run = wandb.init(
        project=project,
        group=group,
        job_type="pareto",
        dir=out,
        mode=os.environ.get("WANDB_MODE", "offline"),  # never needs an account by default
        config={
            "sweeps": list(report.sweeps),
            "cost": report.cost,
            "metric": report.metric,
            "split": report.split,
            "maximize": report.maximize,
        },
        settings=wandb.Settings(silent=True, console="off"),
    )
    table = wandb.Table(columns=GROUP_COLUMNS, data=group_rows(report))
    title = f"{report.metric} ({report.split}) vs {report.cost}"
    run.log(
        {
            "pareto": table,
            "pareto_scatter": wandb.plot.scatter(table, report.cost, "mean", title=title),
            "pareto_plot": wandb.Image(str(png)),
        }
    )
    run_dir = Path(run.dir).parent
    run.finish()
    return run_dir


def write_outputs(
    report: ParetoReport,
    out: str | os.PathLike[str],
    *,
    wandb: bool = False,
    project: str = "lightning_dnas",
    group: str | None = None,
) -> dict[str, Path]:
    """Write the files of the module docstring into ``out`` (created if missing) and, with
    ``wandb``, log to W&B (:func:`log_wandb`). Returns ``{"csv", "seeds_csv", "md", "png"
    [, "wandb"]}`` -> path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "csv": out / "pareto.csv",
        "seeds_csv": out / "pareto_seeds.csv",
        "md": out / "pareto.md",
        "png": out / "pareto.png",
    }
    _write_csv(paths["csv"], GROUP_COLUMNS, group_rows(report))
    _write_csv(paths["seeds_csv"], SEED_COLUMNS, seed_rows(report))
    paths["md"].write_text(markdown(report))
    plot(report, paths["png"])
    if wandb:
        paths["wandb"] = log_wandb(report, paths["png"], out, project=project, group=group)
    return paths
