"""What a small op costs between a network's large kernels, against the same op alone.

Why it matters: a search step adds a few dozen small ops (masks of a few dozen channels) to
the plain step. Timed in a loop they cost a few microseconds each, but inside a training
step every large kernel (a convolution over a 2 MiB feature map) leaves the caches cold for
the next small op, which then pays for its instructions and data again. This is why the
``MaskBank`` does all of a pass's mask ops in one place, at the start of the pass.

Three measurements, in one process, steady heap (no page faults in any):

- ``tiny op``: ``torch.ones(3).abs()`` alone, and right after streaming through a 32 MiB
  buffer (``add_`` over it, untimed), as a large kernel does;
- ``bank``: the search network's ``MaskBank`` call (all masks binarized, all folds) inside
  the forward pass of each model (its forward pre-hook, timed), and called alone in a loop;
- ``regularizer``: ``search.regularizer(1e-6)`` (``cost="params"``) right after a forward
  pass, as a training step calls it, and called alone in a loop.

And one that is not about caches: the step of the architecture optimizer of ResNet-8's six
masks, torch's fused Adam against the callback's ``ArchAdam`` (the same Adam without
torch's per-step CUDA-graph-capture check), with ``lightning`` imported as in a fit: its
import sets ``PYTORCH_NVML_BASED_CUDA_CHECK=1``, with which that check tries to load NVML
at every step on a machine without a GPU driver.

Usage::

    python benchmarks/cold_ops.py [--models resnet8 dscnn mobilenetv1] [--threads 1]
                                  [--rounds 300]

Prints a Markdown table of medians in microseconds, then the Adam line.
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


def bank(key: str, rounds: int) -> tuple[float, float, float, float]:
    """``(inside the forward pass, alone)`` medians of the bank's call for model ``key`` at
    its benchmark batch, in training mode with grad, then the same for the regulariser
    (right after the forward pass, alone), in us."""
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
    after: list[float] = []
    for _ in range(rounds + 20):
        search(x)
        t0 = time.perf_counter()
        search.regularizer(1e-6)
        after.append(time.perf_counter() - t0)
    hooks[search._bank_hook] = the_bank
    reg = (1e6 * statistics.median(after[20:]), _median_us(lambda: search.regularizer(1e-6),
                                                             rounds))  # fmt: skip
    return 1e6 * statistics.median(inside[20:]), _median_us(the_bank, rounds), *reg


def arch_adam(rounds: int) -> tuple[float, float]:
    """``(torch's fused Adam, ArchAdam)`` medians of one step on ResNet-8's six mask
    vectors (16, 16, 32, 32, 64, 64 entries), ``lightning`` imported, in us."""
    import lightning  # noqa: F401  (sets PYTORCH_NVML_BASED_CUDA_CHECK=1, as in a fit)

    from lightning_dnas.callback.arch_step import ArchAdam

    params = [torch.nn.Parameter(torch.ones(n)) for n in (16, 16, 32, 32, 64, 64)]
    for p in params:
        p.grad = torch.randn_like(p)
    theirs = torch.optim.Adam(params, lr=1e-3, fused=True)
    ours = ArchAdam(params, lr=1e-3, fused=True)
    return _median_us(theirs.step, rounds), _median_us(ours.step, rounds)


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
        inside, alone, reg_after, reg_alone = bank(key, args.rounds)
        name = f"{CASES[key].name}, batch {CASES[key].batch}"
        print(f"| {name}: bank call | {inside:.0f} | {alone:.0f} |")
        print(f"| {name}: `regularizer(1e-6)` | {reg_after:.0f} | {reg_alone:.0f} |")
    theirs, ours = arch_adam(args.rounds)
    print(f"\nArchitecture Adam step, ResNet-8's masks, lightning imported: torch's fused Adam "
          f"{theirs:.0f} us, ArchAdam {ours:.0f} us")


if __name__ == "__main__":
    main()
