"""Training-step time of SuperNetModule (hard_gumbel fast path, soft) vs a plain network.

Network (KWS-like): stem conv3x3 1->64 + BN + ReLU on a 1x49x10 input, 4 blocks, global
average pool, linear 64->12; batch 100, cross-entropy, SGD (momentum 0.9). Each block is
a choice between 4 candidates, each with its own BN + ReLU: conv3x3, conv5x5,
depthwise-separable (dw3x3 + BN + ReLU + pw1x1 + BN + ReLU), Identity. Variants:

- ``reference``: plain network, every candidate runs with autograd, outputs summed with
  fixed weights 1/4 (no architecture parameters): what a supernet step costs without any
  NAS machinery (PLiNIO's SuperNet step is 1.0x-1.03x of this).
- ``hard_gumbel``: ``SuperNetModule`` in ``hard_gumbel`` mode (fast path: unselected
  candidates run under ``no_grad``).
- ``hard_gumbel_full``: the same hard_gumbel weights without the fast path (every
  candidate under autograd, ``sum theta_i * y_i``), for comparison.
- ``soft``: ``SuperNetModule`` in ``softmax`` mode.

Measurement condition (SPEC section 5): CPU, ``torch.set_num_threads(2)``, fixed seed,
alpha at init (uniform; its learning rate is 0 so it stays there and the Gumbel
selection keeps varying), warm-up, then interleaved rounds (each round runs a few steps
of every variant in turn), median over >= 20 steps per variant. Peak memory: each
variant runs a few steps in its own subprocess, which resets its peak-RSS mark
(``/proc/self/clear_refs``, Linux) after building the model and batch and reports the
growth of the peak (``VmHWM``) over the resident size at that point (``ru_maxrss``
is not usable: Linux keeps it across fork + exec, so children report the parent's).

Usage: ``python benchmarks/supernet_hard_step.py [--rounds 8] [--steps-per-round 4]``
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lightning_dnas.nas.supernet import SuperNetModule, mixing_weights

CH = 64
BATCH = 100
INPUT = (1, 49, 10)
CLASSES = 12
VARIANTS = ("reference", "hard_gumbel", "hard_gumbel_full", "soft")


def candidates() -> dict[str, nn.Module]:
    """The 4 candidates of one block, each with its own BatchNorm + ReLU."""

    def conv(k: int, groups: int = 1) -> list[nn.Module]:
        return [nn.Conv2d(CH, CH, k, padding=k // 2, groups=groups), nn.BatchNorm2d(CH), nn.ReLU()]

    return {
        "conv3x3": nn.Sequential(*conv(3)),
        "conv5x5": nn.Sequential(*conv(5)),
        "dw_sep": nn.Sequential(*conv(3, groups=CH), *conv(1)),
        "identity": nn.Identity(),
    }


class PlainSum(nn.Module):
    """Reference block: every candidate under autograd, summed with fixed weights 1/n."""

    def __init__(self) -> None:
        super().__init__()
        self.candidates = nn.ModuleDict(candidates())

    def forward(self, x: Tensor) -> Tensor:
        ys = [m(x) for m in self.candidates.values()]
        return sum(y * (1.0 / len(ys)) for y in ys)  # type: ignore[return-value]


class FullHard(SuperNetModule):
    """hard_gumbel without the fast path: every candidate under autograd."""

    def forward(self, x: Tensor) -> Tensor:
        theta = mixing_weights(self.alpha, self.softmax, self.temperature)
        ys = [m(x) for m in self.candidates.values()]
        return sum(t * y for t, y in zip(theta.unbind(), ys, strict=True))  # type: ignore[return-value]


def make_block(variant: str) -> nn.Module:
    """One block of the given variant."""
    if variant == "reference":
        return PlainSum()
    if variant == "hard_gumbel_full":
        return FullHard(candidates(), softmax="hard_gumbel")
    mode = "hard_gumbel" if variant == "hard_gumbel" else "softmax"
    return SuperNetModule(candidates(), softmax=mode)


def make_net(variant: str) -> nn.Module:
    """Stem, 4 blocks of ``variant``, pool, classifier."""
    return nn.Sequential(
        nn.Conv2d(INPUT[0], CH, 3, padding=1),
        nn.BatchNorm2d(CH),
        nn.ReLU(),
        *[make_block(variant) for _ in range(4)],
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(CH, CLASSES),
    )


def make_step(variant: str) -> Callable[[], None]:
    """Build model, batch and optimizer; return a closure doing one training step."""
    net = make_net(variant).train()
    x = torch.randn(BATCH, *INPUT)
    y = torch.randint(0, CLASSES, (BATCH,))
    arch = [p for n, p in net.named_parameters() if n.endswith("alpha")]
    weights = [p for n, p in net.named_parameters() if not n.endswith("alpha")]
    groups = [{"params": weights}] + ([{"params": arch, "lr": 0.0}] if arch else [])
    opt = torch.optim.SGD(groups, lr=0.01, momentum=0.9)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(net(x), y).backward()
        opt.step()

    return step


def _status_kib(field: str) -> int:
    """A ``/proc/self/status`` field in KiB (``VmRSS``, ``VmHWM``)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def measure_memory(variant: str, steps: int) -> None:
    """Subprocess entry: build ``variant``, reset the peak mark, run ``steps`` steps,
    print the peak-RSS growth in KiB."""
    torch.set_num_threads(2)
    torch.manual_seed(0)
    step = make_step(variant)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    base = _status_kib("VmRSS")
    for _ in range(steps):
        step()
    print(_status_kib("VmHWM") - base)


def peak_rss_kib(variant: str, steps: int) -> int:
    """Run :func:`measure_memory` in a fresh interpreter; return its peak growth (KiB)."""
    out = subprocess.run(
        [sys.executable, __file__, "--mem", variant, "--mem-steps", str(steps)],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(out.stdout.strip().splitlines()[-1])


def main() -> None:
    """Time all variants interleaved, then measure peak memory, and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--steps-per-round", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--mem", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--mem-steps", type=int, default=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mem:
        measure_memory(args.mem, args.mem_steps)
        return

    torch.set_num_threads(2)
    torch.manual_seed(0)
    steps = {v: make_step(v) for v in VARIANTS}
    for v in VARIANTS:
        for _ in range(args.warmup):
            steps[v]()
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for _ in range(args.rounds):
        for v in VARIANTS:
            for _ in range(args.steps_per_round):
                t0 = time.perf_counter()
                steps[v]()
                times[v].append(time.perf_counter() - t0)

    ref_ms = statistics.median(times["reference"]) * 1e3
    mems = {v: peak_rss_kib(v, args.mem_steps) for v in VARIANTS}
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, batch {BATCH}, "
        f"input {INPUT}, {len(times['reference'])} steps per variant "
        f"({args.rounds} interleaved rounds x {args.steps_per_round})"
    )
    print(f"{'variant':<18}{'median ms':>10}{'x ref':>8}{'peak RSS growth MiB':>22}{'x ref':>8}")
    for v in VARIANTS:
        ms = statistics.median(times[v]) * 1e3
        mem = mems[v] / 1024
        ratio = mems[v] / mems["reference"]
        print(f"{v:<18}{ms:>10.1f}{ms / ref_ms:>8.2f}{mem:>22.0f}{ratio:>8.2f}")


if __name__ == "__main__":
    main()
