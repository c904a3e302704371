"""Training-step time of the search networks under ``torch.compile`` (CPU): eager and
compiled, plain and search, every variant in its own process, interleaved rounds.

Suites (``--suite``):

- ``pit`` (ResNet-8 batch 32, DS-CNN batch 100, MobileNetV1 batch 32, the cases of
  ``pit_step.py``): ``plain`` is the seed network (cross-entropy, backward, SGD with
  momentum 0.9); ``search`` is ``PIT(model, cost="params")`` with ``+ 1e-6 * soft_cost``,
  SGD on ``net_parameters()`` and the DNASCallback's architecture Adam (fused on CPU) on
  ``nas_parameters()``.
- ``supernet`` (the zoo SuperNets of ``supernet_hard_step.py``): ``reference`` runs every
  candidate with autograd and sums them with fixed weights 1/n; ``softmax`` and
  ``hard_softmax`` are ``SuperNet(model, softmax=mode)`` with ``+ 1e-7 * soft_cost`` and
  an Adam on the logits (learning rate 0).

``compiled`` variants wrap the network (plain, reference or search) in ``torch.compile``
(default inductor backend) and keep the loss, the regulariser, the backward call and the
optimizers eager, as ``torch.compile(model)`` in a user's loop or a Lightning module whose
forward is compiled does. Each variant runs in its own worker process
(:mod:`step_workers`: glibc's default heap unless ``--heap steady``, one heap per variant
as in a user's training); warm-up runs the workers one after the other (the first compiled
step compiles), then ``--rounds`` interleaved rounds of ``--steps-per-round`` steps of every
variant. ``--processes N`` starts N workers per variant and pools their steps (the page
faults of a default-heap step differ from process to process: see :mod:`step_workers`).
Reported: median step times, the search/plain ratio eagerly and compiled, the ratio of
the minimum step times and the median ratio of the same round's steps (noise checks: on
a quiet machine the three agree), the lowest and highest ratio of one process's median
to the base's process of the same index (what one process per variant could have
shown), the ratio over processes (the mean of each process's median, with its standard
error: :func:`step_workers.process_ratio`), the ratio at equal page faults
(:func:`step_workers.fault_adjusted_ratio`), the median minor page faults per step, the
first step's time (compilation) and the frames dynamo compiled, summed over the workers
(after warm-up / at the end: equal when nothing recompiled).

Usage::

    python benchmarks/compile_step.py [--suite pit|supernet] [--models ...] [--rounds 20]
                                      [--steps-per-round 1] [--threads 2] [--heap default]
                                      [--clock wall|cpu] [--processes 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from pit_step import build_step, machine
from step_workers import Timings, fault_adjusted_ratio, process_ratio, run_interleaved
from supernet_hard_step import MODELS, PlainSum

from lightning_dnas import SuperNet, SuperNetModule
from lightning_dnas.nas.modules import set_submodule

SUITES = {"pit": ("plain", "search"), "supernet": ("reference", "softmax", "hard_softmax")}


def _closure(net: torch.nn.Module, compiled: bool, x: torch.Tensor, y: torch.Tensor,
             optimizers: list[torch.optim.Optimizer],
             extra: Callable[[], torch.Tensor] | None) -> Callable[[], None]:  # fmt: skip
    """The training step: zero_grad, (compiled) forward, loss (+ extra), backward, steps."""
    forward = torch.compile(net) if compiled else net

    def step() -> None:
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(forward(x), y)
        if extra is not None:
            loss = loss + extra()
        loss.backward()
        for opt in optimizers:
            opt.step()

    return step


def pit_builder(model: str, variant: str, compiled: bool, seed: int) -> Callable[[], None]:
    """Worker side of the ``pit`` suite: ``pit_step.py``'s step of ``variant``."""
    options = {"seed": seed, "batch": None, "optimizer": "sgd", "fused": False,
               "cost": "params", "lam": 1e-6, "arch_optimizer": "callback"}  # fmt: skip
    return build_step(model, variant, compiled, options)


def supernet_builder(model: str, variant: str, compiled: bool,
                     seed: int) -> Callable[[], None]:  # fmt: skip
    """Worker side of the ``supernet`` suite (``reference``, or a combiner mode)."""
    build, shape, batch, classes = MODELS[model]
    torch.manual_seed(seed)
    net = build().train()
    x = torch.randn(batch, *shape)
    y = torch.randint(0, classes, (batch,))
    if variant == "reference":
        for name, module in list(net.named_modules()):
            if isinstance(module, SuperNetModule):
                set_submodule(net, name, PlainSum(module.candidates))
        opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
        return _closure(net, compiled, x, y, [opt], None)
    search = SuperNet(net, x[:2], cost="params", softmax=variant)
    opts = [torch.optim.SGD(search.net_parameters(), lr=0.01, momentum=0.9),
            torch.optim.Adam(search.nas_parameters(), lr=0.0)]  # fmt: skip
    return _closure(search, compiled, x, y, opts, lambda: search.regularizer(1e-7))


def _ms(t: Timings) -> float:
    return 1e3 * statistics.median(t.times)


def report(model: str, base: str, results: dict[str, Timings]) -> list[str]:
    """Table rows of one model: each variant against ``base`` in the same mode."""
    rows = []
    for name, t in results.items():
        variant, mode = name.rsplit("/", 1)
        ref = results[f"{base}/{mode}"]
        paired = statistics.median(s / p for p, s in zip(ref.times, t.times, strict=True))
        per_process = [s / p for p, s in zip(ref.process_medians(), t.process_medians(),
                                             strict=True)]  # fmt: skip
        over, error = process_ratio(ref, t)
        eager = results.get(f"{variant}/eager")
        speedup = f"{_ms(eager) / _ms(t):.2f}x" if eager is not None else ""
        rows.append(
            f"| {model} | {variant} | {mode} | {_ms(t):.1f} | {_ms(t) / _ms(ref):.3f}x | "
            f"{min(t.times) / min(ref.times):.3f}x | {paired:.3f}x | "
            f"{over:.3f}x +- {error:.3f} | {fault_adjusted_ratio(ref, t):.3f}x | "
            f"{min(per_process):.3f}-{max(per_process):.3f}x | "
            f"{statistics.median(t.faults):.0f} | {speedup} | "
            f"{t.warmup[0]:.1f} | {t.frames_after_warmup} / {t.frames} |"
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run the suite on the chosen models and print (and optionally write) the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", choices=sorted(SUITES), default="pit")
    parser.add_argument("--models", nargs="+", default=None,
                        help="pit: resnet8 dscnn mobilenetv1; supernet: dscnn resnet8 "
                             "mobilenetv1 (default: all for pit, dscnn for supernet)")
    parser.add_argument("--variants", nargs="+", default=None,
                        help="subset of the suite's variants (the first is the base)")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--steps-per-round", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--heap", choices=("default", "steady"), default="default")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="cpu: the workers' CPU time (step_workers.CLOCKS)")
    parser.add_argument("--processes", type=int, default=3,
                        help="worker processes per variant, steps pooled")
    parser.add_argument("--at-once", type=int, default=3,
                        help="worker processes per variant alive at a time")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    variants = args.variants or SUITES[args.suite]
    models = args.models or (["resnet8", "dscnn", "mobilenetv1"] if args.suite == "pit"
                             else ["dscnn"])  # fmt: skip
    builder = pit_builder if args.suite == "pit" else supernet_builder
    torch.set_num_threads(args.threads)
    load = f"{os.getloadavg()[0]:.2f}"
    lines = ["| model | variant | mode | median ms | x base | min x base | paired x base | "
             "x base over processes | x base at equal faults | x base per process | "
             "faults/step | compiled speed-up | first step s | frames (warm-up / end) |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]  # fmt: skip
    for model in models:
        specs = {f"{v}/{mode}": (builder, (model, v, mode == "compiled", args.seed))
                 for mode in ("eager", "compiled") for v in variants}  # fmt: skip
        results = run_interleaved(specs, args.rounds, args.steps_per_round, args.warmup,
                                  args.threads, args.heap, args.clock,
                                  args.processes, args.at_once)  # fmt: skip
        rows = report(model, variants[0], results)
        print("\n".join(rows), file=sys.stderr, flush=True)
        lines.extend(rows)
    table = "\n".join(lines)
    note = (f"{args.rounds} rounds x {args.steps_per_round} steps x {args.processes} "
            f"processes per variant, heap {args.heap}, {args.clock} clock, {args.threads} "
            f"threads; 1-min load average "
            f"{load} before, {os.getloadavg()[0]:.2f} after")
    print(table)
    print(note)
    if args.output is not None:
        command = "python benchmarks/compile_step.py " + " ".join(
            argv if argv is not None else sys.argv[1:])
        date = time.strftime("%Y-%m-%d %H:%M %Z")
        args.output.write_text(f"{table}\n\n{note}\n\nCommand: `{command.strip()}`  \n"
                               f"Machine: {machine()}  \nDate: {date}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
