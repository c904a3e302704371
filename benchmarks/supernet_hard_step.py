"""Training-step time and peak memory of the DS-CNN SuperNet search vs running every candidate.

Network: ``lightning_dnas.zoo.DSCNNSuperNet`` (the thesis' KWS supernet, fig. 5.2: 4 choices
of {conv3x3, conv5x5, depthwise-separable, Identity}, each candidate with its own BN +
ReLU), input 1x49x10, batch 100, cross-entropy, SGD (momentum 0.9) on the weights. Variants:

- ``reference``: the same network with every choice replaced by a plain module that runs
  every candidate with autograd and sums them with fixed weights 1/n (no NAS machinery;
  PLiNIO's SuperNet step is 1.0x-1.03x of this).
- ``softmax``, ``gumbel``, ``hard_softmax``, ``hard_gumbel``: ``lightning_dnas.SuperNet``
  in that mode; the step adds ``1e-7 * soft_cost`` to the loss and also steps an Adam on
  the architecture logits (learning rate 0, so alpha stays at its uniform init and the
  Gumbel selection keeps varying, the measurement condition of SPEC section 5).
  In the hard modes the unselected candidates run in channels_last (the default
  ``SuperNetModule.channels_last_unselected``, see ``nas/supernet/memory_format.py``).
- ``hard_gumbel_same_format``: ``hard_gumbel`` with ``channels_last_unselected=False``
  (unselected candidates in the input's memory format): the skipped backward alone.

Measurement: CPU, ``torch.set_num_threads(2)``, fixed seed, warm-up, then interleaved
rounds (each round runs a few steps of every variant in turn), median over >= 20 steps per
variant. Peak memory: each variant runs a few steps in its own subprocess, which resets its
peak-RSS mark (``/proc/self/clear_refs``, Linux) after building the model and batch and
reports the growth of the peak (``VmHWM``) over the resident size at that point.

Usage: ``python benchmarks/supernet_hard_step.py [--rounds 8] [--steps-per-round 4]
[--channels-last] [--model dscnn|resnet8|mobilenetv1]`` (``--channels-last`` puts every
variant, the reference too, in channels_last; ``--model`` measures another zoo SuperNet:
ResNet-8 on 3x32x32, MobileNetV1 on 3x96x96, batch 32).
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

from lightning_dnas import SuperNet, SuperNetModule
from lightning_dnas.nas.modules import set_submodule
from lightning_dnas.nas.supernet import supernet_modules
from lightning_dnas.zoo import DSCNNSuperNet, MobileNetV1SuperNet, ResNet8SuperNet

MODELS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...], int, int]] = {
    # name: (constructor, input shape of one sample, batch, classes)
    "dscnn": (DSCNNSuperNet, (1, 49, 10), 100, 12),
    "resnet8": (ResNet8SuperNet, (3, 32, 32), 32, 10),
    "mobilenetv1": (MobileNetV1SuperNet, (3, 96, 96), 32, 2),
}
VARIANTS = (
    "reference", "softmax", "gumbel", "hard_softmax", "hard_gumbel", "hard_gumbel_same_format"
)
SAME_FORMAT = "_same_format"


class PlainSum(nn.Module):
    """Reference block: every candidate under autograd, summed with fixed weights 1/n."""

    def __init__(self, candidates: nn.ModuleDict) -> None:
        super().__init__()
        self.candidates = candidates

    def forward(self, x: Tensor) -> Tensor:
        ys = [m(x) for m in self.candidates.values()]
        out = ys[0] / len(ys)
        for y in ys[1:]:
            out = out + y / len(ys)
        return out


def make_step(
    variant: str, channels_last: bool = False, model: str = "dscnn"
) -> Callable[[], None]:
    """Build model, batch and optimizers; return a closure doing one training step
    (``channels_last``: network and batch in that memory format, for every variant)."""
    torch.manual_seed(0)
    build, shape, batch, classes = MODELS[model]
    net = build().train()
    x = torch.randn(batch, *shape)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, classes, (batch,))
    if variant == "reference":
        for name, module in list(net.named_modules()):
            if isinstance(module, SuperNetModule):
                set_submodule(net, name, PlainSum(module.candidates))
        opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)

        def plain_step() -> None:
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(net(x), y).backward()
            opt.step()

        return plain_step
    mode = variant.removesuffix(SAME_FORMAT)
    search = SuperNet(net, x[:2], cost="params", softmax=mode)
    if variant.endswith(SAME_FORMAT):
        for module in supernet_modules(search):
            module.channels_last_unselected = False
    weights = torch.optim.SGD(search.net_parameters(), lr=0.01, momentum=0.9)
    arch = torch.optim.Adam(search.nas_parameters(), lr=0.0)

    def search_step() -> None:
        weights.zero_grad(set_to_none=True)
        arch.zero_grad(set_to_none=True)
        (F.cross_entropy(search(x), y) + search.regularizer(1e-7)).backward()
        weights.step()
        arch.step()

    return search_step


def _status_kib(field: str) -> int:
    """A ``/proc/self/status`` field in KiB (``VmRSS``, ``VmHWM``)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def measure_memory(variant: str, steps: int, channels_last: bool, model: str) -> None:
    """Subprocess entry: build ``variant``, reset the peak mark, run ``steps`` steps,
    print the peak-RSS growth in KiB."""
    torch.set_num_threads(2)
    torch.manual_seed(0)
    step = make_step(variant, channels_last, model)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    base = _status_kib("VmRSS")
    for _ in range(steps):
        step()
    print(_status_kib("VmHWM") - base)


def peak_rss_kib(variant: str, steps: int, channels_last: bool, model: str) -> int:
    """Run :func:`measure_memory` in a fresh interpreter; return its peak growth (KiB)."""
    out = subprocess.run(
        [sys.executable, __file__, "--mem", variant, "--mem-steps", str(steps), "--model", model,
         *(["--channels-last"] if channels_last else [])],
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
    parser.add_argument("--model", choices=sorted(MODELS), default="dscnn",
                        help="the SuperNet (default dscnn, the measurement of SPEC section 5)")
    parser.add_argument("--mem", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--mem-steps", type=int, default=5, help=argparse.SUPPRESS)
    parser.add_argument("--channels-last", action="store_true",
                        help="every variant (the reference too) in channels_last memory format")
    args = parser.parse_args()
    if args.mem:
        measure_memory(args.mem, args.mem_steps, args.channels_last, args.model)
        return

    torch.set_num_threads(2)
    torch.manual_seed(0)
    steps = {v: make_step(v, args.channels_last, args.model) for v in VARIANTS}
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
    mems = {v: peak_rss_kib(v, args.mem_steps, args.channels_last, args.model)
            for v in VARIANTS}
    print(
        f"{args.model}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
        f"batch {MODELS[args.model][2]}, input {MODELS[args.model][1]}, "
        f"{len(times['reference'])} steps per variant "
        f"({args.rounds} interleaved rounds x {args.steps_per_round})"
        + (", channels_last" if args.channels_last else "")
    )
    print(f"{'variant':<26}{'median ms':>10}{'x ref':>8}{'peak RSS growth MiB':>22}{'x ref':>8}")
    for v in VARIANTS:
        ms = statistics.median(times[v]) * 1e3
        mem = mems[v] / 1024
        ratio = mems[v] / mems["reference"]
        print(f"{v:<26}{ms:>10.1f}{ms / ref_ms:>8.2f}{mem:>22.0f}{ratio:>8.2f}")


if __name__ == "__main__":
    main()
