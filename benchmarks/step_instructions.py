"""Instructions per training step (valgrind's callgrind): the PIT search step against the
plain step of ``pit_step.py``, as counts that do not depend on the machine's load.

Wall-clock ratios on a shared machine swing by more than the search step's fixed cost
(docs/BENCHMARKS.md); the number of instructions a step executes barely does (the plain
MobileNetV1 step counted 62.65 M and 62.68 M in two runs, 0.05% apart). It counts the work
(Python, dispatcher, autograd and kernels) and not its cost in time (cache misses, page
faults, a second thread), so it is the measure for *changing* the fixed cost (one
variant against another, or one commit against another: ``--repo`` imports
``lightning_dnas`` from another checkout), not for the ratio users see.

Each variant is one ``torch.utils.benchmark.Timer.collect_callgrind`` run: a fresh
interpreter under callgrind builds the step with :func:`pit_step.build_step` (same seed,
optimizers and regulariser), runs it 3 times untimed, then counts ``--number`` steps
(instrumentation on for those only) and reports instructions per step, excluding the
interpreter's own baseline. ``--threads 1`` by default, so that no second thread's
scheduling enters the count.

Usage::

    python benchmarks/step_instructions.py [--models resnet8 mobilenetv1] [--batch 2]
        [--arch-optimizer callback] [--repo PATH] [--output FILE]

About 3-6 minutes per model and variant on this 2-core machine (most of it importing torch under
valgrind); needs ``valgrind`` on the PATH.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from torch.utils.benchmark import Timer

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def setup_code(repo: Path, model: str, variant: str, options: dict[str, object],
               threads: int) -> str:  # fmt: skip
    """The statements that build ``variant``'s step in the callgrind interpreter."""
    return "\n".join([
        "import sys, warnings",
        f"sys.path.insert(0, {str(HERE)!r})",
        f"sys.path.insert(0, {str(repo)!r})",
        "warnings.filterwarnings('ignore')",
        "import torch",
        f"torch.set_num_threads({threads})",
        "import lightning_dnas",  # from `repo`: pit_step would put this checkout first
        "from pit_step import build_step",
        f"step = build_step({model!r}, {variant!r}, False, {options!r})",
        "for _ in range(3):",
        "    step()",
    ])  # fmt: skip


def count(repo: Path, model: str, variant: str, options: dict[str, object], threads: int,
          number: int) -> float:  # fmt: skip
    """Instructions per ``variant`` step of ``model`` (baseline removed)."""
    timer = Timer("step()", setup=setup_code(repo, model, variant, options, threads))
    stats = timer.collect_callgrind(number=number)
    return stats.counts(denoise=True) / number


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=("resnet8", "dscnn", "mobilenetv1"),
                        default=["resnet8", "dscnn", "mobilenetv1"])  # fmt: skip
    parser.add_argument("--batch", type=int, default=2,
                        help="batch size (small: the fixed cost shows)")  # fmt: skip
    parser.add_argument("--arch-optimizer", choices=("callback", "adam"), default="callback")
    parser.add_argument("--repo", type=Path, default=ROOT,
                        help="the checkout whose lightning_dnas is measured")  # fmt: skip
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--number", type=int, default=5, help="steps counted per variant")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("step_instructions.py needs valgrind on the PATH", file=sys.stderr)
        return 2
    # collect_callgrind starts `python` from the PATH: make it this interpreter.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    options = {"seed": 0, "batch": args.batch, "optimizer": "sgd", "fused": False,
               "cost": "params", "lam": 1e-6, "arch_optimizer": args.arch_optimizer}  # fmt: skip
    lines = ["| model | batch | plain (M instr.) | search (M instr.) | search - plain (M) | "
             "ratio |", "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for model in args.models:
        plain, search = (count(args.repo, model, v, options, args.threads, args.number)
                         for v in ("plain", "search"))  # fmt: skip
        lines.append(f"| {model} | {args.batch} | {plain / 1e6:.2f} | {search / 1e6:.2f} | "
                     f"{(search - plain) / 1e6:.2f} | {search / plain:.4f}x |")
        print(lines[-1], flush=True)
    text = "\n".join(lines)
    print(text)
    if args.output:
        command = "python benchmarks/step_instructions.py " + " ".join(argv or sys.argv[1:])
        args.output.write_text(f"{text}\n\nCommand: `{command}`  \nRepository: {args.repo}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
