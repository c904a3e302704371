"""What a small op costs between a network's large kernels, against the same op alone.

Why it matters: a search step adds a few dozen small ops (masks of a few dozen channels) to
the plain step. Timed in a loop they cost a few microseconds each, but inside a training
step every large kernel (a convolution over a 2 MiB feature map) leaves the caches cold for
the next small op, which then pays for its instructions and data again. This is why the
``MaskBank`` does all of a pass's mask ops in one place, at the start of the pass.

Two measurements, in one process, steady heap (no page faults in either):

- ``tiny op``: ``torch.ones(3).abs()`` alone, and right after streaming through a 32 MiB
  buffer (``add_`` over it, untimed), as a large kernel does;
- ``bank``: the search network's ``MaskBank`` call (all masks binarized, all folds) inside
  the forward pass of each model (its forward pre-hook, timed), and called alone in a loop.

Usage::

    python benchmarks/cold_ops.py [--models resnet8 dscnn mobilenetv1] [--threads 1]
                                  [--rounds 300]

Prints a Markdown table of medians in microseconds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from pit_step import CASES
from step_workers import steady_heap

from lightning_dnas import PIT


def _median_us(fn: Callable[[], object], rounds: int, before: Callable[[], object] | None = None,
               ) -> float:  # fmt: skip
    """Median time of ``fn`` in microseconds over ``rounds`` calls (after 20 untimed),
    ``before`` run untimed ahead of each call."""
    times = []
    for i in range(rounds + 20):
        if before is not None:
            before()
        t0 = time.perf_counter()
        fn()
        if i >= 20:
            times.append(time.perf_counter() - t0)
    return 1e6 * statistics.median(times)


def tiny_op(rounds: int) -> tuple[float, float]:
    """``(warm, after a 32 MiB stream)`` medians of ``torch.ones(3).abs()``, in us."""
    big = torch.ones(8 * 2**20)
    op = lambda: torch.ones(3).abs()  # noqa: E731
    return _median_us(op, rounds), _median_us(op, rounds, lambda: big.add_(1.0))


def bank(key: str, rounds: int) -> tuple[float, float]:
    """``(inside the forward pass, alone)`` medians of the bank's call for model ``key`` at
    its benchmark batch, in training mode with grad, in us."""
    case = CASES[key]
    torch.manual_seed(0)
    x = torch.randn(case.batch, *case.input_shape)
    search = PIT(case.factory(), example_input=x[:1].clone(), cost="params").train()
    the_bank = search._bank
    hooks = search.net._forward_pre_hooks
    inside: list[float] = []

    def timed(*args: object) -> None:
        t0 = time.perf_counter()
        the_bank(*args)
        inside.append(time.perf_counter() - t0)

    hooks[search._bank_hook] = timed
    for _ in range(rounds + 20):
        search(x)
    return 1e6 * statistics.median(inside[20:]), _median_us(the_bank, rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()
    steady_heap()
    torch.set_num_threads(args.threads)
    warm, cold = tiny_op(args.rounds)
    print("| what | between large kernels (us) | alone (us) |")
    print("|---|---|---|")
    print(f"| `torch.ones(3).abs()` (after a 32 MiB stream) | {cold:.1f} | {warm:.1f} |")
    for key in args.models:
        inside, alone = bank(key, args.rounds)
        print(f"| {CASES[key].name} bank call, batch {CASES[key].batch} | {inside:.0f} | "
              f"{alone:.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
