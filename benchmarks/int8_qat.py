"""Float vs int8 on the application's default (MNIST-1D cascade), and the QAT step's cost.

1. Runs ``python -m lightning_dnas.train`` twice with the same seed and cache, once with
   ``quantize=null`` and once with ``quantize=int8`` (the search phases are computed once
   and reused; each run fine-tunes the found network its own way), and prints the float
   fine-tuned network's test accuracy next to the int8 ONNX file's (onnxruntime), the
   share of test samples where onnxruntime's int8 class equals PyTorch's fake-quantised
   network's, and the file's weight+bias bytes next to the ``flash`` cost.
2. Times a training step (forward, cross-entropy, backward, Adam step; batch 64, one
   thread) of the float fine-tuned network against the same network prepared for QAT,
   interleaved, median of ``--steps`` steps each after warm-up.

Usage: ``python benchmarks/int8_qat.py [--out DIR] [--seed 0] [--steps 60]`` (about 3-4
minutes on an idle 2-core machine when the phases are not cached yet).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn


def _app(out: Path, seed: int, quantize: str) -> dict:
    run = out / f"quantize_{quantize}"
    subprocess.run([sys.executable, "-m", "lightning_dnas.train", f"quantize={quantize}",
                    f"seed={seed}", f"hydra.run.dir={run}", f"cache_dir={out / 'cache'}"],
                   check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    return json.loads((run / "results.json").read_text())


def _step_ms(nets: dict[str, nn.Module], steps: int) -> dict[str, float]:
    """Median ms of a training step of each network, interleaved (so machine noise hits
    both alike)."""
    torch.manual_seed(0)
    x, y = torch.randn(64, 1, 40), torch.randint(0, 10, (64,))
    opts = {k: torch.optim.Adam(n.parameters(), lr=1e-3) for k, n in nets.items()}
    times: dict[str, list[float]] = {k: [] for k in nets}
    for i in range(steps + 10):
        for name, net in nets.items():
            start = time.perf_counter()
            loss = nn.functional.cross_entropy(net(x), y)
            opts[name].zero_grad()
            loss.backward()
            opts[name].step()
            if i >= 10:  # warm-up steps are not timed
                times[name].append((time.perf_counter() - start) * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/int8_qat_bench"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    torch.set_num_threads(1)
    fp = _app(args.out, args.seed, "null")
    q = _app(args.out, args.seed, "int8")
    test = q["final"]["test"]
    print(f"seed {args.seed}: float fine-tune test acc {fp['final']['test']['acc']:.4f}; "
          f"QAT fine-tune: fake-quantised {test['acc']:.4f}, int8 ONNX (onnxruntime) "
          f"{test['int8_acc']:.4f}, same class {test['int8_agreement']:.4f}; "
          f"int8 weights+biases {q['int8']['flash']:,} B (+{q['int8']['qparam_bytes']:,} B "
          f"scales/zero points), flash cost {q['int8']['flash_cost']:,} B")  # fmt: skip

    from lightning_dnas.app.export import load_export
    from lightning_dnas.quantize import prepare_qat

    net = load_export(args.out / "quantize_null")
    nets = {"float": net.train(), "qat": prepare_qat(net, torch.randn(8, 1, 40)).train()}
    ms = _step_ms(nets, args.steps)
    print(f"training step, batch 64, 1 thread: float {ms['float']:.2f} ms, QAT "
          f"{ms['qat']:.2f} ms ({ms['qat'] / ms['float']:.2f}x)")
    print(f"app wall: float {fp['wall_s']:.1f} s, int8 {q['wall_s']:.1f} s")


if __name__ == "__main__":
    main()
