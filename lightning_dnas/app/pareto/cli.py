"""The command line of the Pareto tool: ``python -m lightning_dnas.pareto``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .analysis import build_report
from .model import COSTS, ParetoError
from .output import markdown, write_outputs


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m lightning_dnas.pareto``."""
    parser = argparse.ArgumentParser(
        prog="python -m lightning_dnas.pareto",
        description="Average sweeps' results.json over fine-tune seeds, mark the Pareto "
        "fronts, write pareto.csv, pareto_seeds.csv, pareto.md and pareto.png.",
    )
    parser.add_argument("sweeps", nargs="+", type=Path, help="sweep directories (overlaid)")
    parser.add_argument(
        "--cost",
        choices=COSTS,
        default="params",
        help="the x axis: params, macs, or flash / peak_ram bytes (runs that did not record "
        "them are skipped with a message)",
    )
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
        report = build_report(
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
