"""Training-step time of a PIT search with a budget controller, and with the peak-RAM cost.

``pit_step.py``'s measurement (same ``Stepper``, same batch, SGD momentum on the weights,
Adam on the masks, ``torch.set_num_threads(--threads)``, the steady glibc heap, warm-up
steps, then interleaved rounds of one step per variant) over these variants of one model:

- ``plain``: the seed network;
- ``params``: ``PIT(cost=params)``, loss ``+ search.regularizer(1e-6)`` (pit_step's search);
- ``params+budget``: the same with ``BudgetController(search, {"params": B})`` instead of
  the lambda (its term each step, ``update()`` after the step; B = 50% of the seed);
- ``peak_ram``: ``PIT(cost={"params", "peak_ram"})``, ``regularizer({"peak_ram": 1e-9})``;
- ``peak_ram+budget``: ``BudgetController(search, {"peak_ram": B})``.

Reported per variant: median step ms and the ratio to ``plain`` (the figure pit_step.py
reports); the differences asked about (``params+budget`` vs ``params``, ``peak_ram`` vs
``params``) as the median over rounds of the per-round ratio of the two variants' steps,
with its spread: the 25th-75th percentile of those per-round ratios and the range of the
medians of ``--blocks`` consecutive blocks of rounds. The load average before and after.

``python benchmarks/budget_step.py [--models resnet8] [--rounds 60] [--threads 1]
[--variants plain params params+budget peak_ram]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pit_step import CASES, Stepper, arch_optimizer, machine, weight_optimizer
from step_workers import steady_heap

from lightning_dnas import PIT
from lightning_dnas.nas.budget import BudgetController

VARIANTS = ("plain", "params", "params+budget", "peak_ram", "peak_ram+budget")
PAIRS = (("params+budget", "params"), ("peak_ram", "params"), ("peak_ram+budget", "peak_ram"))


def build(key: str, variant: str, seed: int) -> Stepper:
    """The step of ``variant`` (module docstring) on case ``key``'s fixed batch."""
    case = CASES[key]
    torch.manual_seed(seed)
    model = case.factory()
    x = torch.randn(case.batch, *case.input_shape)
    with torch.no_grad():
        classes = model.eval()(x[:1]).shape[-1]
    model.train()
    y = torch.randint(0, classes, (x.shape[0],))
    if variant == "plain":
        return Stepper(model, None, [weight_optimizer("sgd", model.parameters())], x, y)
    cost = variant.split("+")[0]
    costs = {"params": "params"} if cost == "params" else {"params": "params", cost: cost}
    search = PIT(model, example_input=x[:1].clone(), cost=costs).train()
    opts: list[torch.optim.Optimizer] = [weight_optimizer("sgd", search.net_parameters()),
                                         arch_optimizer("callback", search.nas_parameters())]
    if variant.endswith("+budget"):
        ctrl = BudgetController(search, {cost: 0.5 * search.hard_cost(cost)}, ramp_steps=10**6)
        return BudgetStepper(ctrl, search, lambda: ctrl.term(1.0), opts, x, y)
    lam = {"params": 1e-6, "peak_ram": 1e-9}[cost]
    return Stepper(search, lambda: search.regularizer({cost: lam}), opts, x, y)


class BudgetStepper(Stepper):
    """pit_step's step plus the controller's dual update after the optimizer steps (inside
    the timed region, as the callback runs it after every architecture step)."""

    def __init__(self, ctrl: BudgetController, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.ctrl = ctrl

    def __call__(self, record: bool = True) -> None:
        t0 = time.perf_counter()
        super().__call__(record=False)
        self.ctrl.update()
        if record:
            self.times.append(time.perf_counter() - t0)


def _quartiles(values: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(values, n=4)
    return q[0], q[2]


def run(key: str, variants: list[str], args: argparse.Namespace) -> str:
    """Interleaved rounds of every variant; the Markdown lines for ``key``."""
    steps = {v: build(key, v, args.seed) for v in variants}
    for _ in range(args.warmup):
        for s in steps.values():
            s(record=False)
    for _ in range(args.rounds):
        for s in steps.values():
            s()
    med = {v: statistics.median(s.times) for v, s in steps.items()}
    lines = [f"**{CASES[key].name}** (batch {CASES[key].batch}, {args.rounds} rounds):", "",
             "| variant | median ms | ratio to plain |", "|---|---:|---:|"]  # fmt: skip
    for v in variants:
        ratio = med[v] / med["plain"] if "plain" in med else float("nan")
        lines.append(f"| {v} | {1e3 * med[v]:.1f} | {ratio:.3f} |")
    lines.append("")
    size = max(args.rounds // args.blocks, 1)
    for a, b in PAIRS:
        if a not in steps or b not in steps:
            continue
        per = [ta / tb for ta, tb in zip(steps[a].times, steps[b].times, strict=True)]
        lo, hi = _quartiles(per)
        blocks = [statistics.median(per[i:i + size]) for i in range(0, len(per), size)]
        lines.append(f"- {a} / {b}: median per-round ratio {statistics.median(per):.3f} "
                     f"(IQR {lo:.3f}-{hi:.3f}; medians of {len(blocks)} blocks "
                     f"{min(blocks):.3f}-{max(blocks):.3f})")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Measure and print the Markdown (also to ``--output``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=sorted(CASES), default=["resnet8"])
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    steady_heap()
    before = os.getloadavg()[0]
    parts = [run(key, args.variants, args) for key in args.models]
    text = "\n\n".join(parts) + (f"\n\n1-min load average {before:.2f} before, "
                                 f"{os.getloadavg()[0]:.2f} after; {machine()}")  # fmt: skip
    text += "\n\nCommand: `python benchmarks/budget_step.py " + " ".join(
        argv if argv is not None else sys.argv[1:]) + "`"  # fmt: skip
    print(text)
    if args.output is not None:
        args.output.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
