"""Training-step time of a PIT search network vs the plain seed network (CPU).

For each seed model of the zoo (ResNet-8 batch 32, DS-CNN batch 100, MobileNetV1 batch 32):

- ``plain`` step: forward of the seed network, cross-entropy, backward, optimizer step
  (SGD with momentum 0.9 by default, ``--optimizer adam`` for Adam; ``--fused`` gives every
  optimizer of both variants ``fused=True``);
- ``search`` step: forward of ``PIT(model, cost="params")``, cross-entropy
  ``+ lam * soft_cost`` (``search.regularizer(lam)``, lam = 1e-6), backward, step of the
  same weight optimizer on ``net_parameters()`` and of the architecture optimizer on
  ``nas_parameters()``: by default the one a ``DNASCallback`` gives them (an Adam, fused on
  CPU); ``--arch-optimizer adam`` for torch's default Adam.

Both use the same random batch. Measurement condition: CPU, ``torch.set_num_threads(2)``
(``--threads``), fixed seed, a few warm-up steps of each, then interleaved rounds (plain,
search, plain, search, ...; ``--steps-per-round`` steps of each per round, default 1) and
the median over ``--rounds * --steps-per-round`` (default 40, at least 30) timed steps per
variant; ``zero_grad`` is inside the timed step. Fine interleaving makes both variants see
the same background load. As a noise check, the ratio of the *minimum* step times, the
median ratio of adjacent (plain, search) step pairs and the load average are printed too:
on a quiet machine all three ratios agree; if they do not, run again. By default glibc
malloc is told to keep freed memory (``--heap steady``, see :func:`steady_heap`), which
removes page-fault noise that depends on the other variant's heap layout; ``--heap default``
leaves malloc alone. ``--isolate`` runs each variant in its own worker process (its own
heap, as in a user's training; the parent still interleaves single steps): the way to
measure ``--heap default`` without the other variant's heap layout in the result.
``--processes N`` (implies ``--isolate``) starts N workers per variant and pools their
steps: a default-heap step's page faults, and with them its time, differ from process to
process (:mod:`step_workers`), so one process per variant gives ratios that disagree from
run to run; the noise line then also gives the median page faults per step and the range
of the per-process ratios (``--at-once`` of them per variant alive at a time).

Also reported: conversion time (the ``PIT`` constructor, example input of batch 1, median
of ``--repeats`` after one untimed conversion) and export time (``search.export()`` with
its equivalence check, median of ``--repeats``, after the timed steps and with every other
channel of each mask set below the threshold, so that slicing actually happens).

Usage::

    python benchmarks/pit_step.py [--threads 2] [--rounds 40] [--steps-per-round 1]
                                  [--models resnet8 dscnn mobilenetv1] [--optimizer sgd]
                                  [--output FILE]

Prints a Markdown table (model, batch, plain ms, search ms, ratio, convert s, export s);
``--output FILE`` also writes it (with the command and the machine) to FILE.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

sys.path.insert(0, str(Path(__file__).resolve().parent))

from step_workers import (
    Timings,
    fault_adjusted_error,
    fault_adjusted_ratio,
    process_ratio,
    run_interleaved,
    steady_heap,
)

from lightning_dnas import PIT
from lightning_dnas.callback.arch_step import default_arch_optimizer
from lightning_dnas.zoo import DSCNN, MobileNetV1, ResNet8


@dataclass(frozen=True)
class Case:
    name: str
    factory: Callable[[], nn.Module]
    batch: int
    input_shape: tuple[int, ...]


CASES = {
    "resnet8": Case("ResNet-8", ResNet8, 32, (3, 32, 32)),
    "dscnn": Case("DS-CNN", DSCNN, 100, (1, 49, 10)),
    "mobilenetv1": Case("MobileNetV1", MobileNetV1, 32, (3, 96, 96)),
}


@dataclass
class Result:
    model: str
    batch: int
    plain_ms: float
    search_ms: float
    plain_min_ms: float
    search_min_ms: float
    paired_ratio: float
    convert_s: float
    export_s: float
    isolated: str = ""

    @property
    def ratio(self) -> float:
        return self.search_ms / self.plain_ms


def weight_optimizer(
    kind: str, params: Iterable[nn.Parameter], fused: bool = False
) -> torch.optim.Optimizer:
    extra = {"fused": True} if fused else {}
    if kind == "sgd":
        return torch.optim.SGD(params, lr=1e-3, momentum=0.9, **extra)
    return torch.optim.Adam(params, lr=1e-3, **extra)


def arch_optimizer(kind: str, params: Iterable[nn.Parameter], fused: bool = False,
                   ) -> torch.optim.Optimizer:  # fmt: skip
    """The search step's optimizer of ``nas_parameters()`` (lr 1e-3): ``callback``, the
    DNASCallback's default architecture optimizer (an Adam, fused where torch has a fused
    Adam: on CPU); ``adam``, torch's Adam with its defaults (``fused`` as for the weights:
    a per-tensor Python loop on CPU otherwise)."""
    if kind == "callback":
        return default_arch_optimizer(1e-3)([{"params": list(params)}])
    return weight_optimizer("adam", params, fused)


class Stepper:
    """One variant's training step on a fixed batch; ``__call__`` runs and times it."""

    def __init__(
        self,
        forward: Callable[[Tensor], Tensor],
        extra: Callable[[], Tensor] | None,
        optimizers: list[torch.optim.Optimizer],
        x: Tensor,
        y: Tensor,
    ) -> None:
        self.forward, self.extra, self.optimizers, self.x, self.y = forward, extra, optimizers, x, y
        self.times: list[float] = []

    def __call__(self, record: bool = True) -> None:
        t0 = time.perf_counter()
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(self.forward(self.x), self.y)
        if self.extra is not None:
            loss = loss + self.extra()
        loss.backward()
        for opt in self.optimizers:
            opt.step()
        dt = time.perf_counter() - t0
        if record:
            self.times.append(dt)


def _prune_half(search: PIT) -> None:
    """Set every other channel of every mask (and every tap mask's oldest taps) below the
    threshold, so that export() slices layers."""
    with torch.no_grad():
        for mask in search.channel_masks.values():
            mask.alpha[::2] = 0.1
        for taps in search.tap_masks.values():
            if taps.beta is not None:
                taps.beta[0] = 0.1


def build_step(key: str, variant: str, compiled: bool, options: dict[str, object],
               ) -> Callable[[], None]:  # fmt: skip
    """The training step of ``variant`` (``plain``/``search``) of case ``key`` built from
    scratch, as :func:`run_case` builds it (same seed, batch, optimizers, regulariser),
    the network's forward wrapped in ``torch.compile`` when ``compiled``: the worker side
    of ``--isolate`` (:mod:`step_workers`) and of ``compile_step.py``. ``options``:
    ``seed``, ``batch``, ``optimizer``, ``fused``, ``cost``, ``lam``, ``arch_optimizer``."""
    case, o = CASES[key], options
    torch.manual_seed(o["seed"])
    seed_model = case.factory()
    x = torch.randn(o["batch"] or case.batch, *case.input_shape)
    with torch.no_grad():
        classes = seed_model.eval()(x[:1]).shape[-1]
    seed_model.train()
    y = torch.randint(0, classes, (x.shape[0],))
    if variant == "plain":
        net, extra = seed_model, None
        opts = [weight_optimizer(o["optimizer"], net.parameters(), o["fused"])]
    else:
        net = search = PIT(seed_model, example_input=x[:1].clone(), cost=o["cost"]).train()
        lam = o["lam"]
        extra = lambda: search.regularizer(lam)  # noqa: E731
        opts = [weight_optimizer(o["optimizer"], search.net_parameters(), o["fused"]),
                arch_optimizer(o["arch_optimizer"], search.nas_parameters(), o["fused"])]
    stepper = Stepper(torch.compile(net) if compiled else net, extra, opts, x, y)
    return lambda: stepper(record=False)


def _isolated_times(key: str, args: argparse.Namespace) -> tuple[Timings, Timings]:
    """``--isolate``: plain and search steps, each variant in ``--processes`` processes."""
    options = {k: getattr(args, k) for k in ("seed", "batch", "optimizer", "fused", "cost",
                                             "lam", "arch_optimizer")}  # fmt: skip
    out = run_interleaved({v: (build_step, (key, v, False, options)) for v in ("plain", "search")},
                          args.rounds, args.steps_per_round, args.warmup, args.threads,
                          args.heap, args.clock, args.processes, args.at_once)  # fmt: skip
    return out["plain"], out["search"]


def _isolated_note(plain: Timings, search: Timings) -> str:
    """Page faults per step, the ratio over processes with its standard error, the ratio
    at equal page faults (:func:`step_workers.fault_adjusted_ratio`) and the range of the
    per-process ratios (noise line)."""
    ratios = [s / p for p, s in zip(plain.process_medians(), search.process_medians(),
                                    strict=True)]  # fmt: skip
    ratio, error = process_ratio(plain, search)
    return (f"faults/step {statistics.median(plain.faults):.0f} / "
            f"{statistics.median(search.faults):.0f}, over {len(ratios)} processes "
            f"{ratio:.3f}x +- {error:.3f}, at equal faults "
            f"{fault_adjusted_ratio(plain, search):.3f}x +- "
            f"{fault_adjusted_error(plain, search):.3f}, per-process ratio "
            f"{min(ratios):.3f}-{max(ratios):.3f}x")


def run_case(case: Case, args: argparse.Namespace) -> Result:
    torch.manual_seed(args.seed)
    seed_model = case.factory()
    x = torch.randn(args.batch or case.batch, *case.input_shape)
    with torch.no_grad():
        classes = seed_model.eval()(x[:1]).shape[-1]
    seed_model.train()
    y = torch.randint(0, classes, (x.shape[0],))
    example = x[:1].clone()

    # Conversion: one untimed (first-use costs of torch.fx etc.), then the median of repeats.
    PIT(seed_model, example_input=example, cost=args.cost)
    convert = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        search = PIT(seed_model, example_input=example, cost=args.cost)
        convert.append(time.perf_counter() - t0)
    search.train()

    # The plain network starts from the same weights as the search network (PIT deep-copies).
    plain = copy.deepcopy(seed_model).train()
    fused = args.fused
    plain_step = Stepper(plain, None, [weight_optimizer(args.optimizer, plain.parameters(), fused)],
                         x, y)  # fmt: skip
    lam = args.lam
    search_step = Stepper(
        search, lambda: search.regularizer(lam),
        [weight_optimizer(args.optimizer, search.net_parameters(), fused),
         arch_optimizer(args.arch_optimizer, search.nas_parameters(), fused)],
        x, y,
    )  # fmt: skip

    torch.manual_seed(args.seed)  # reproducible dropout masks (DS-CNN)
    isolated = ""
    if args.isolate:
        key = next(k for k, c in CASES.items() if c is case)
        plain_t, search_t = _isolated_times(key, args)
        plain_step.times, search_step.times = plain_t.times, search_t.times
        isolated = _isolated_note(plain_t, search_t)
    else:
        for _ in range(args.warmup):
            plain_step(record=False)
            search_step(record=False)
        for _ in range(args.rounds):
            for _ in range(args.steps_per_round):
                plain_step()
            for _ in range(args.steps_per_round):
                search_step()

    _prune_half(search)
    search.export()  # untimed first export
    export = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        search.export()
        export.append(time.perf_counter() - t0)

    return Result(
        model=case.name, batch=x.shape[0],
        plain_ms=1e3 * statistics.median(plain_step.times),
        search_ms=1e3 * statistics.median(search_step.times),
        plain_min_ms=1e3 * min(plain_step.times), search_min_ms=1e3 * min(search_step.times),
        paired_ratio=statistics.median(
            s / p for p, s in zip(plain_step.times, search_step.times, strict=True)
        ),
        convert_s=statistics.median(convert), export_s=statistics.median(export),
        isolated=isolated,
    )  # fmt: skip


def table(results: list[Result]) -> str:
    lines = [
        "| model | batch | plain ms | search ms | ratio | convert s | export s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.model} | {r.batch} | {r.plain_ms:.1f} | {r.search_ms:.1f} | "
            f"{r.ratio:.3f}x | {r.convert_s:.3f} | {r.export_s:.3f} |"
        )
    return "\n".join(lines)


def _load() -> str:
    return f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "n/a"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def engine_version() -> str:
    """The repository commit and whether ``lightning_dnas/`` has local changes."""
    root = Path(__file__).resolve().parents[1]

    def git(*cmd: str) -> str:
        done = subprocess.run(["git", "-C", str(root), *cmd], capture_output=True, text=True,
                              timeout=10, check=True)  # fmt: skip
        return done.stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--", "lightning_dnas")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + (" + local changes in lightning_dnas/" if dirty else "")


def machine() -> str:
    return (
        f"{_cpu_name()}, {os.cpu_count()} CPU cores visible, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, Python {platform.python_version()}; "
        f"lightning_dnas at {engine_version()}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", nargs="+", choices=sorted(CASES),
                        default=["resnet8", "dscnn", "mobilenetv1"])  # fmt: skip
    parser.add_argument("--batch", type=int, default=None,
                        help="override every model's batch size")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--steps-per-round", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5,
                        help="conversions / exports timed (median)")  # fmt: skip
    parser.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd")
    parser.add_argument("--arch-optimizer", choices=("callback", "adam"), default="callback",
                        help="callback: the DNASCallback's architecture optimizer (fused "
                             "Adam on CPU); adam: torch's Adam with its defaults")  # fmt: skip
    parser.add_argument("--cost", default="params")
    parser.add_argument("--lam", type=float, default=1e-6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fused", action="store_true",
                        help="fused=True for every optimizer (both variants)")  # fmt: skip
    parser.add_argument("--heap", choices=("steady", "default"), default="steady",
                        help="steady: glibc malloc keeps freed memory (steady_heap)")  # fmt: skip
    parser.add_argument("--isolate", action="store_true",
                        help="each variant in its own process (step_workers.py)")  # fmt: skip
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="with --isolate: cpu = the workers' CPU time")  # fmt: skip
    parser.add_argument("--processes", type=int, default=1,
                        help="worker processes per variant (> 1 implies --isolate)")
    parser.add_argument("--at-once", type=int, default=4,
                        help="worker processes per variant alive at a time")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    args.isolate = args.isolate or args.processes > 1
    if args.rounds * args.steps_per_round < 30:
        print("note: fewer than 30 timed steps per variant", file=sys.stderr)

    torch.set_num_threads(args.threads)
    if args.heap == "steady" and not steady_heap():
        print("note: --heap steady needs glibc; using the default heap", file=sys.stderr)
    load_before = _load()
    results = []
    for key in args.models:
        results.append(run_case(CASES[key], args))
        r = results[-1]
        print(f"{r.model}: plain {r.plain_ms:.1f} ms, search {r.search_ms:.1f} ms "
              f"({r.ratio:.3f}x; min {r.plain_min_ms:.1f} / {r.search_min_ms:.1f} ms, "
              f"{r.search_min_ms / r.plain_min_ms:.3f}x)", file=sys.stderr, flush=True)  # fmt: skip
    out = table(results)
    noise = (
        "Noise check: ratio of the minimum step times "
        + ", ".join(f"{r.model} {r.search_min_ms / r.plain_min_ms:.3f}x" for r in results)
        + "; median ratio of adjacent (plain, search) steps "
        + ", ".join(f"{r.model} {r.paired_ratio:.3f}x" for r in results)
        + "".join(f"; {r.model} {r.isolated}" for r in results if r.isolated)
        + f"; 1-min load average {load_before} before, {_load()} after."
    )
    print(out)
    print(noise)
    if args.output is not None:
        command = "python benchmarks/pit_step.py " + " ".join(
            argv if argv is not None else sys.argv[1:]
        )
        args.output.write_text(
            f"{out}\n\n{noise}\n\nCommand: `{command.strip()}`  \nMachine: {machine()}  \n"
            f"Date: {time.strftime('%Y-%m-%d %H:%M %Z')}\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
