"""One budgeted fit vs a lambda sweep vs a narrower seed, on the application's MNIST-1D default.

``python benchmarks/budget.py run --seed S [--out benchmarks/results/budget.jsonl]`` runs, for
one seed, everything the table needs and appends one JSON line per fit as it goes (a killed
run keeps what it finished; a rerun skips the fits already in the file):

- ``warmup``: the application's PIT search phase (``method=pit``: warmup 5 / search 20,
  ``Mnist1dTCN`` channels 32, kernel 9, dilations 1,1,2,2 on MNIST-1D 4,000 samples, batch
  64, Adam 1e-3 / weight decay 1e-4, one thread, ``seed_everything(S)``) up to the end of
  the warmup, with a checkpoint there. **Shared**: every search below resumes from it
  (the callback's resume is exact, tests/callback/test_resume.py), so each search equals
  the application's from-scratch phase without paying 5 warmup epochs per variant.
- ``budget``: the search stage with ``DNASCallback(budget={"params": B})`` for each
  ``--budgets`` B; ``sweep``: the same with ``strength=lambda`` (no budget), for each of the
  ``--lambdas``. Each search is followed, as in the application, by the final fine-tune:
  a fit of its own of the exported network, 20 epochs, ``seed_everything(S)``, learning
  rate cosine-annealed to 0; then validation and test accuracy.
- ``narrow``: the seed network at ``--channels`` widths (uniformly narrower), trained as the
  application's reference (45 epochs = the whole pipeline, annealed, ``seed_everything(S)``).

``python benchmarks/budget.py table [--out FILE]`` prints the Markdown table from the JSON
lines: per budget, the budgeted fit's mean test accuracy over the seeds, the sweep's point
under the budget with the best *validation* accuracy (per seed, then the mean of those
points' test accuracies), the narrow seed with the most parameters under the budget, the
landing error and the wall/CPU time of one budgeted search vs the whole sweep.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lightning_dnas import DNASCallback
from lightning_dnas.app.modules import ClassificationModule
from lightning_dnas.app.report import network_costs
from lightning_dnas.data import MNIST1DDataModule
from lightning_dnas.zoo import Mnist1dTCN

WARMUP, SEARCH, FINETUNE = 5, 20, 20  # the application's method=pit defaults
ARCH_LR = 1e-3  # the application's arch_lr (conf/config.yaml), not the callback's default
COSTS = {"params": "params", "macs": "macs"}  # as the application: params penalised first
OUT = Path(__file__).resolve().parent / "results" / "budget.jsonl"


def datamodule() -> MNIST1DDataModule:
    """The application's data: conf/data/mnist1d.yaml."""
    dm = MNIST1DDataModule(num_samples=4000, batch_size=64, val_fraction=0.1, seed=42)
    dm.setup()
    return dm


def module(net: torch.nn.Module, anneal: int | None) -> ClassificationModule:
    """The application's classifier and optimizer (conf/optimizer/adam.yaml)."""
    optimizer = functools.partial(torch.optim.Adam, lr=1e-3, weight_decay=1e-4)
    return ClassificationModule(net, optimizer, num_classes=10, anneal_epochs=anneal)


def trainer(epochs: int, callbacks: list[Any], root: Path) -> L.Trainer:
    """The application's trainer, without logging, progress output or checkpoints (other
    than a ModelCheckpoint among ``callbacks``)."""
    saving = any(isinstance(c, ModelCheckpoint) for c in callbacks)
    return L.Trainer(max_epochs=epochs, callbacks=callbacks, logger=False,
                     enable_checkpointing=saving,
                     enable_progress_bar=False, enable_model_summary=False,
                     num_sanity_val_steps=0, default_root_dir=str(root))  # fmt: skip


class StopAfter(Callback):
    """Stop the fit after epoch ``last`` (put after the DNASCallback: it resets the flag)."""

    def __init__(self, last: int) -> None:
        self.last = last

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch >= self.last:
            trainer.should_stop = True


def callback(**kwargs: Any) -> DNASCallback:
    """The application's PIT search phase (conf/method/pit.yaml): warmup 5, search 20,
    patience 20, no fine-tune in the phase, both costs; ``kwargs``: strength or budget."""
    return DNASCallback("pit", cost=COSTS, warmup_epochs=WARMUP, search_epochs=SEARCH,
                        finetune_epochs=0, patience=20, network="net", export_dir=False,
                        arch_lr=ARCH_LR, **kwargs)  # fmt: skip


def warmup(seed: int, root: Path) -> Path:
    """The shared warmup: the search phase stopped after its last warmup epoch."""
    ckpt = root / f"warmup-{seed}" / f"epoch={WARMUP - 1}.ckpt"
    if ckpt.is_file():
        return ckpt
    L.seed_everything(seed, workers=True)
    saver = ModelCheckpoint(dirpath=ckpt.parent, every_n_epochs=1, save_top_k=-1,
                            filename="{epoch}")  # fmt: skip
    fit = trainer(WARMUP + SEARCH, [callback(strength=1e-6), StopAfter(WARMUP - 1), saver], root)
    fit.fit(module(Mnist1dTCN(dilations=[1, 1, 2, 2]), None), datamodule=datamodule())
    return ckpt


def finetune(net: torch.nn.Module, seed: int, root: Path) -> dict[str, float]:
    """The application's final fine-tune of an exported network, then its accuracies."""
    L.seed_everything(seed, workers=True)
    dm = datamodule()
    m = module(net, FINETUNE)
    trainer(FINETUNE, [], root).fit(m, datamodule=dm)
    return {"val_acc": m.evaluate(dm.val_dataloader())["acc"],
            "test_acc": m.evaluate(dm.test_dataloader())["acc"]}  # fmt: skip


def search(seed: int, root: Path, ckpt: Path, **kwargs: Any) -> dict[str, Any]:
    """The search stage resumed from the shared warmup, then the fine-tune."""
    L.seed_everything(seed, workers=True)
    dnas = callback(**kwargs)
    m = module(Mnist1dTCN(dilations=[1, 1, 2, 2]), None)
    wall, cpu = time.perf_counter(), time.process_time()
    trainer(WARMUP + SEARCH, [dnas], root).fit(m, datamodule=datamodule(), ckpt_path=ckpt)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    params, macs = network_costs(m.net, torch.zeros(2, 1, 40))
    out = {"params": params, "macs": macs, "search_wall_s": wall, "search_cpu_s": cpu}
    return {**out, **finetune(m.net, seed, root)}


def narrow(seed: int, channels: int, root: Path) -> dict[str, Any]:
    """The seed at ``channels`` trained as the application's reference (45 epochs)."""
    L.seed_everything(seed, workers=True)
    dm = datamodule()
    epochs = WARMUP + SEARCH + FINETUNE
    m = module(Mnist1dTCN(channels=channels, dilations=[1, 1, 2, 2]), epochs)
    trainer(epochs, [], root).fit(m, datamodule=dm)
    params, macs = network_costs(m.net, torch.zeros(2, 1, 40))
    return {"params": params, "macs": macs, "val_acc": m.evaluate(dm.val_dataloader())["acc"],
            "test_acc": m.evaluate(dm.test_dataloader())["acc"]}  # fmt: skip


def run(args: argparse.Namespace) -> None:
    """Every fit of one seed, one JSON line each (skipping those already in the file)."""
    torch.set_num_threads(1)  # the application's threads=1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    done = {json.dumps(r["key"]) for r in read(args.out)}
    root = Path(args.work) / f"seed-{args.seed}"
    ckpt = warmup(args.seed, root)
    jobs: list[tuple[dict[str, Any], Any]] = []
    for b in args.budgets:
        jobs.append(({"kind": "budget", "budget": b, "seed": args.seed},
                     functools.partial(search, budget={"params": b})))  # fmt: skip
    for lam in args.lambdas:
        jobs.append(({"kind": "sweep", "lambda": lam, "seed": args.seed},
                     functools.partial(search, strength={"params": lam})))  # fmt: skip
    for c in args.channels:
        jobs.append(({"kind": "narrow", "channels": c, "seed": args.seed},
                     lambda s, r, _ck, c=c: narrow(s, c, r)))  # fmt: skip
    for key, job in jobs:
        if json.dumps(key) in done:
            continue
        t0 = time.perf_counter()
        result = job(args.seed, root, ckpt)
        row = {"key": key, **result, "wall_s": time.perf_counter() - t0,
               "load": os.getloadavg()[0]}  # fmt: skip
        with args.out.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)


def read(path: Path) -> list[dict[str, Any]]:
    """The JSON lines written so far."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def table(rows: list[dict[str, Any]], budgets: list[float]) -> str:
    """The Markdown table (module docstring); ``-`` where a fit is missing."""
    by = lambda kind: [r for r in rows if r["key"]["kind"] == kind]  # noqa: E731
    seeds = sorted({r["key"]["seed"] for r in by("budget")})
    sweep_cpu = {s: sum(r["search_cpu_s"] for r in by("sweep") if r["key"]["seed"] == s)
                 for s in seeds}  # fmt: skip
    sweep_wall = {s: sum(r["search_wall_s"] for r in by("sweep") if r["key"]["seed"] == s)
                  for s in seeds}  # fmt: skip
    lines = ["| budget | budgeted: params (landing) | test acc | sweep best under budget: "
             "params, lambda | test acc | budgeted - sweep | narrow seed: params | test acc "
             "| one search wall / CPU s | sweep (6 searches) wall / CPU s |",
             "|---:|---|---:|---|---:|---:|---|---:|---:|---:|"]
    for b in budgets:
        fits = [r for r in by("budget") if r["key"]["budget"] == b]
        landing = ", ".join(f"{r['params']:,} ({r['params'] / b - 1:+.1%})" for r in fits)
        acc = [r["test_acc"] for r in fits]
        picked = []
        for s in sorted({r["key"]["seed"] for r in fits}):
            under = [r for r in by("sweep") if r["key"]["seed"] == s and r["params"] <= b]
            if under:
                picked.append(max(under, key=lambda r: r["val_acc"]))
        sweep = ", ".join(f"{r['params']:,} ({r['key']['lambda']:g})" for r in picked)
        sacc = [r["test_acc"] for r in picked]
        thin = [r for r in by("narrow") if r["params"] <= b]
        width = max((r["params"] for r in thin), default=None)
        nacc = [r["test_acc"] for r in thin if r["params"] == width]
        mean = lambda v: f"{100 * statistics.mean(v):.2f}" if v else "-"  # noqa: E731
        diff = (f"{100 * (statistics.mean(acc) - statistics.mean(sacc)):+.2f} pt"
                if acc and sacc else "-")  # fmt: skip
        one = (f"{statistics.mean(r['search_wall_s'] for r in fits):.0f} / "
               f"{statistics.mean(r['search_cpu_s'] for r in fits):.0f}") if fits else "-"
        all_ = (f"{statistics.mean(sweep_wall.values()):.0f} / "
                f"{statistics.mean(sweep_cpu.values()):.0f}") if seeds else "-"
        lines.append(f"| {b:,.0f} | {landing or '-'} | {mean(acc)} | {sweep or '-'} | "
                     f"{mean(sacc)} | {diff} | {width if width else '-'} | {mean(nacc)} | "
                     f"{one} | {all_} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``run`` (one seed's fits) or ``table`` (the Markdown from the JSON lines)."""
    global WARMUP, SEARCH, FINETUNE  # one run, one setting
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("run", "table"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budgets", type=float, nargs="+", default=[2000, 5000, 10000])
    parser.add_argument("--lambdas", type=float, nargs="+",
                        default=[1e-6, 3e-6, 1e-5, 3e-5, 1e-4, 3e-4])  # fmt: skip
    parser.add_argument("--channels", type=int, nargs="+", default=[8, 13, 18])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--work", default="/tmp/budget_bench")
    parser.add_argument("--epochs", type=int, nargs=3, default=[WARMUP, SEARCH, FINETUNE],
                        help="warmup, search, fine-tune (smaller: a smoke test only)")  # fmt: skip
    args = parser.parse_args(argv)
    WARMUP, SEARCH, FINETUNE = args.epochs
    if args.what == "run":
        run(args)
    else:
        print(table(read(args.out), args.budgets))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
