"""Where a PIT search step spends its time: per-op CPU time of the plain and the search
network (torch.profiler), fwd + bwd, one thread, so that the mask arithmetic is visible
apart from the convolutions even when wall-clock ratios are noisy on a shared machine.

Usage: ``python benchmarks/pit_step_profile.py [--model mobilenetv1] [--steps 3]``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lightning_dnas import PIT
from lightning_dnas.zoo import DSCNN, MobileNetV1, ResNet8

CASES = {"resnet8": (ResNet8, (32, 3, 32, 32)), "dscnn": (DSCNN, (100, 1, 49, 10)),
         "mobilenetv1": (MobileNetV1, (32, 3, 96, 96))}  # fmt: skip


def main() -> None:
    """Profile both networks and print the top ops per step."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=sorted(CASES), default="mobilenetv1")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--top", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    factory, shape = CASES[args.model]
    model = factory()
    x, y = torch.randn(shape), torch.randint(0, 2, (shape[0],))
    search = PIT(model, x[:1])
    for net, name in ((model, "plain"), (search, "search")):
        for _ in range(3):
            net.zero_grad()
            F.cross_entropy(net(x), y).backward()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(args.steps):
                net.zero_grad()
                F.cross_entropy(net(x), y).backward()
        events = prof.key_averages()
        total = sum(e.self_cpu_time_total for e in events) / args.steps / 1e3
        print(f"{name}: {total:.1f} ms of op time per step (fwd + bwd)")
        for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[: args.top]:
            ms = e.self_cpu_time_total / args.steps / 1e3
            print(f"  {e.key:50s} {ms:8.2f} ms  {e.count // args.steps:5d} calls")


if __name__ == "__main__":
    main()
