"""ResNet-8 under a peak-RAM budget vs under a params budget at the same parameter count.

``python benchmarks/memory_vs_params.py [--fractions 0.3 0.5 0.7] [--steps 80]
[--out benchmarks/results/memory_vs_params.jsonl] [--plot docs/memory_vs_params.png]``

For each fraction ``f`` of the seed's peak RAM (ResNet-8, 49,152 B at int8):

1. a PIT search with ``BudgetController(search, {"peak_ram": f * seed_peak})``;
2. a PIT search with ``{"params": P}``, ``P`` = the params the first network landed on, so
   both land at about the same parameter count (the controller lands >= 97% of it);

each a plain-PyTorch loop of ``--steps`` joint steps (Adam 1e-2 on weights and masks,
random CIFAR-shaped batches of 16, seed 0, ramp over half the steps) then the feasibility
step and the export. Random data: this measures *where* each cost prunes, not accuracy.
Each export is measured on its own with ``memory_report`` (params, MACs, flash, peak RAM
and the operation holding it) and its per-layer widths are kept. One JSON line per network
is appended as it finishes; the Pareto plot (params vs peak RAM, both families and the
seed) is drawn from the file.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lightning_dnas import PIT
from lightning_dnas.nas.budget import BudgetController
from lightning_dnas.nas.cost.memory import memory_report
from lightning_dnas.zoo import ResNet8

HERE = Path(__file__).resolve().parent
COSTS = {"params": "params", "peak_ram": "peak_ram"}
SHAPE = (3, 32, 32)


def widths(net: nn.Module) -> dict[str, int]:
    """Output channels of every conv/linear of a plain network, by module path."""
    return {name: (m.out_features if isinstance(m, nn.Linear) else m.out_channels)
            for name, m in net.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)}  # fmt: skip


def measure(net: nn.Module) -> dict[str, Any]:
    """The exported network's costs (memory_report) and widths."""
    r = memory_report(net.eval(), torch.zeros(1, *SHAPE))
    return {"params": r.params, "macs": r.macs, "flash": r.flash, "peak_ram": r.peak_ram,
            "peak_op": r.peak_op, "peak_target": r.peak_target, "widths": widths(net)}  # fmt: skip


def search(budget: dict[str, float], steps: int) -> tuple[nn.Module, float]:
    """One budgeted search (module docstring); returns the export and its seconds."""
    torch.manual_seed(0)
    t0 = time.perf_counter()
    pit = PIT(ResNet8(), torch.randn(2, *SHAPE), cost=COSTS)
    ctrl = BudgetController(pit, budget, ramp_steps=steps // 2)
    wopt = torch.optim.Adam(pit.net_parameters(), lr=1e-2)
    aopt = torch.optim.Adam(pit.nas_parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        x, y = torch.randn(16, *SHAPE, generator=gen), torch.randint(10, (16,), generator=gen)
        loss = F.cross_entropy(pit(x), y)
        wopt.zero_grad(), aopt.zero_grad()
        (loss + ctrl.term(loss)).backward()
        wopt.step(), aopt.step(), ctrl.update()
    ctrl.finalize()
    return pit.export(), time.perf_counter() - t0


def read(path: Path) -> list[dict[str, Any]]:
    """The JSON lines written so far."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run(args: argparse.Namespace) -> None:
    """Both searches per fraction, one JSON line per network (the seed first)."""
    torch.set_num_threads(1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    rows = read(args.out)
    done = {(r["kind"], r["fraction"]) for r in rows}
    if ("seed", 1.0) not in done:
        rows.append({"kind": "seed", "fraction": 1.0, **measure(ResNet8())})
        _append(args.out, rows[-1])
    seed_peak = next(r for r in rows if r["kind"] == "seed")["peak_ram"]
    for f in args.fractions:
        if ("peak_ram", f) not in done:
            budget = {"peak_ram": float(int(f * seed_peak))}
            net, secs = search(budget, args.steps)
            rows.append({"kind": "peak_ram", "fraction": f, "budget": budget, "seconds": secs,
                         **measure(net)})  # fmt: skip
            _append(args.out, rows[-1])
        if ("params", f) not in done:
            peak = next(r for r in rows if r["kind"] == "peak_ram" and r["fraction"] == f)
            budget = {"params": float(peak["params"])}
            net, secs = search(budget, args.steps)
            rows.append({"kind": "params", "fraction": f, "budget": budget, "seconds": secs,
                         **measure(net)})  # fmt: skip
            _append(args.out, rows[-1])


def _append(path: Path, row: dict[str, Any]) -> None:
    with path.open("a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps({k: v for k, v in row.items() if k != "widths"}), flush=True)


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown: per fraction, both networks' costs, then the widths side by side."""
    out = ["| budget | params | peak RAM B | held by | MACs | flash B |",
           "|---|---:|---:|---|---:|---:|"]
    for r in sorted(rows, key=lambda r: (-r["fraction"], r["kind"])):
        label = "seed" if r["kind"] == "seed" else ", ".join(
            f"{k} {v:,.0f}" for k, v in r["budget"].items())  # fmt: skip
        out.append(f"| {label} | {r['params']:,} | {r['peak_ram']:,} | {r['peak_target']} | "
                   f"{r['macs']:,} | {r['flash']:,} |")  # fmt: skip
    seed = next(r for r in rows if r["kind"] == "seed")
    fractions = sorted({r["fraction"] for r in rows if r["kind"] != "seed"}, reverse=True)
    head = " | ".join(f"peak {f:g} / params" for f in fractions)
    out += ["", f"| layer | seed | {head} |", "|---|---:|" + "---:|" * len(fractions)]
    for layer, width in seed["widths"].items():
        cells = []
        for f in fractions:
            pair = [next((r["widths"].get(layer, 0) for r in rows
                          if r["kind"] == k and r["fraction"] == f), "-")
                    for k in ("peak_ram", "params")]  # fmt: skip
            cells.append(f"{pair[0]} / {pair[1]}")
        out.append(f"| {layer} | {width} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Params (x) vs peak RAM (y): the peak-RAM-budget family, the params-budget family."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for kind, marker, label in (("peak_ram", "o", "peak-RAM budget"),
                                ("params", "s", "params budget (same params)"),
                                ("seed", "*", "seed")):  # fmt: skip
        pts = sorted((r["params"], r["peak_ram"]) for r in rows if r["kind"] == kind)
        if pts:
            ax.plot(*zip(*pts, strict=True), marker=marker, label=label,
                    linestyle="-" if kind != "seed" else "none")  # fmt: skip
    ax.set_xlabel("params (conv + linear)")
    ax.set_ylabel("peak RAM, bytes (int8, batch 1)")
    ax.set_title("ResNet-8: PIT under a peak-RAM vs a params budget")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    """``run`` (the searches), ``table`` (Markdown) and ``plot`` (the PNG)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("run", "table", "plot"))
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.3, 0.5, 0.7])
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "memory_vs_params.jsonl")
    parser.add_argument("--plot", type=Path,
                        default=HERE.parent / "docs" / "memory_vs_params.png")  # fmt: skip
    args = parser.parse_args(argv)
    if args.what == "run":
        run(args)
    elif args.what == "table":
        print(table(read(args.out)))
    else:
        plot(read(args.out), args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
