"""The Hydra application: ``python -m lightning_dnas.train`` / ``lightning-dnas-train``.

One run: build the data and the start network from the config, run the search phases of
the method (:mod:`~lightning_dnas.app.phases`), fine-tune the found network with
``finetune_seed``, train the seed network for as many epochs as the reference (each of
these reused from ``cache_dir`` when an identical one was computed before, and continued
from its last epoch when an earlier attempt was interrupted), and write into the run's
output directory: ``config.yaml`` (resolved), ``checkpoints/`` (each phase's and the
fine-tune's), ``export/`` (``arch.json``, ``model.pt``: no pickled class, rebuilt by
:func:`~lightning_dnas.app.export.load_export`, ``model.onnx``) and ``results.json``
(:mod:`~lightning_dnas.app.results`), then print the seed-vs-found table. With
``quantize=int8`` the fine-tune is quantisation-aware and ``export/model_int8.onnx`` (QDQ)
replaces ``model.onnx``, measured with onnxruntime (:mod:`~lightning_dnas.app.int8`).
``budget.<cost>=B`` lands the last search phase's export at or under ``B``
(:mod:`~lightning_dnas.app.budgets`); the seed's and the found network's flash, peak RAM and
the operation holding the peak are measured for results.json, the table and W&B.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch import LightningModule, Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig, OmegaConf
from torch import nn

from lightning_dnas.callback import DNASCallback
from lightning_dnas.data import DatasetNotFoundError
from lightning_dnas.onnx_export import OnnxExportError, export_onnx
from lightning_dnas.restore import restore

from . import int8
from .budgets import budget_error, search_costs, unknown_budget
from .cache import cached
from .checks import ConfigError, check_config, check_output_dir, read_budget
from .export import save_export
from .modules import AutoEncoderModule, ClassificationModule
from .phases import EpochPrinter, Phase, StageRecorder, measure, plan, total_epochs
from .quiet import drop_lightning_tips
from .report import format_table, layer_shapes, network_costs, point, wandb_summary, with_memory
from .results import Point, RunResult, StageRecord, make_search_id

Builder = Callable[[], nn.Module]


class Run:
    """The state one application run shares between its phases."""

    def __init__(self, cfg: DictConfig, out: Path) -> None:
        self.cfg, self.out = cfg, out
        self.datamodule = instantiate(cfg.data.datamodule)
        self.datamodule.prepare_data()
        self.datamodule.setup("fit")
        self.example = next(iter(self.datamodule.val_dataloader()))[0][:2]
        cache = cfg.cache_dir
        self.cache = None if cache is None else Path(hydra.utils.to_absolute_path(cache))
        self.base = {k: OmegaConf.to_container(cfg[k], resolve=True)
                     for k in ("data", "model", "optimizer", "trainer")}  # fmt: skip
        self.base.update(seed=cfg.seed, cost=cfg.cost)
        self.budget = read_budget(cfg)  # {cost: B} of budget.<cost>; the last phase's key
        self.wandb: Any = None

    def logger(self) -> Any:
        """The configured logger for the next fit. W&B gets one logger (one W&B run) for
        the whole application run, so its dashboard holds every phase, the fine-tune and
        the reference; the resolved config is the run's config, and in a multirun the runs
        of one sweep share a W&B group (the sweep directory's name)."""
        if self.wandb is not None:
            return self.wandb
        if not str(self.cfg.logger.get("_target_", "")).endswith("WandbLogger"):
            return instantiate(self.cfg.logger)
        hydra_cfg = HydraConfig.get()
        group = Path(hydra_cfg.sweep.dir).name if hydra_cfg.mode == RunMode.MULTIRUN else None
        self.wandb = instantiate(self.cfg.logger, group=group)
        self.wandb.log_hyperparams(OmegaConf.to_container(self.cfg, resolve=True))
        return self.wandb

    def finish(self, result: RunResult | None) -> None:
        """Close the W&B run (with the final numbers in its summary): the next job of a
        multirun, in the same process, starts a run of its own."""
        if self.wandb is None:
            return
        import wandb  # the optional extra; only reached when a WandbLogger was configured

        if result is not None:
            self.wandb.experiment.summary.update(wandb_summary(result))
        wandb.finish()
        self.wandb = None

    def module(self, net: nn.Module, final_epochs: int | None = None) -> LightningModule:
        """The LightningModule of the data's task around ``net``. ``final_epochs``: this is
        a final training (the fine-tune, the reference) of that many epochs, whose learning
        rate is cosine-annealed when the config's ``anneal_final`` is on."""
        optimizer = instantiate(self.cfg.optimizer)
        anneal = final_epochs if self.cfg.anneal_final else None
        if self.cfg.data.task == "anomaly":
            return AutoEncoderModule(net, optimizer, anneal)
        return ClassificationModule(net, optimizer, self.datamodule.num_classes, anneal)

    def trainer(self, epochs: int, callbacks: list[Any], checkpointing: bool = False) -> Trainer:
        """A Trainer from the config for ``epochs`` epochs."""
        return instantiate(self.cfg.trainer, max_epochs=epochs, callbacks=callbacks,
                           logger=self.logger(), default_root_dir=str(self.out),
                           enable_checkpointing=checkpointing)  # fmt: skip

    def fit(self, module: LightningModule, epochs: int, callbacks: list[Any],
            folder: Path) -> None:  # fmt: skip
        """``Trainer.fit`` of ``module`` for ``epochs`` epochs, resumable: the state after
        every epoch is kept in ``folder/resume/last.ckpt`` (weights, optimizers, the
        callbacks' state: DNAS stage, RNG, stage records), and a fit that finds it (left by
        an attempt that crashed or was killed) continues from it instead of starting
        over. Removed when the fit completes."""
        resume = folder / "resume"
        # Lightning runs checkpoint callbacks after the others at the end of an epoch, so
        # the file holds the state after every callback's epoch-end work.
        saver = ModelCheckpoint(dirpath=resume, filename="last", enable_version_counter=False)
        trainer = self.trainer(epochs, [*callbacks, saver], checkpointing=True)
        last = resume / "last.ckpt"
        ckpt = None
        if last.is_file():
            try:
                state = torch.load(last, map_location="cpu", weights_only=False)
                done = int(state["epoch"]) + 1
            except Exception as err:  # a file cut short by a kill, or not a checkpoint
                print(f"cannot resume from {last} ({err!r}): starting over", flush=True)
                done = epochs
            # A checkpoint of the last epoch would make fit skip its end (the export):
            # start over in that rare case (a crash after the last epoch).
            if done < epochs:
                ckpt = last
                print(f"resuming after epoch {done}/{epochs} from {last}", flush=True)
        with warnings.catch_warnings():
            # the resume folder holds the checkpoint we continue from: not a stale run
            warnings.filterwarnings("ignore", "Checkpoint directory .* exists and is not empty")
            trainer.fit(module, datamodule=self.datamodule, ckpt_path=ckpt)
        shutil.rmtree(resume, ignore_errors=True)

    def search(self, phase: Phase, start: Builder, after: str | None) -> tuple[Builder, dict]:
        """Run (or reuse) one search phase from the network ``start()`` builds. Returns a
        builder of the phase's exported network and its summary (records, export history,
        cache key, whether it was reused)."""
        cfg = self.cfg
        key = {**self.base, "phase": phase.to_dict(), "after": after, "icv": cfg.icv,
               "softmax": OmegaConf.to_container(cfg.softmax), "arch_lr": cfg.arch_lr,
               "search_mode": cfg.search_mode,
               "converter": OmegaConf.to_container(cfg.converter)}  # fmt: skip

        def compute(folder: Path) -> None:
            seed_everything(cfg.seed, workers=True)
            module = self.module(start())
            costs = search_costs(cfg.cost, phase.budget or {})  # the penalised cost first
            dnas = DNASCallback(
                stages=phase.stages, cost=costs, strength={cfg.cost: phase.strength},
                budget=phase.budget,
                icv=cfg.icv, softmax=cfg.softmax.mode, temperature=cfg.softmax.temperature,
                arch_lr=cfg.arch_lr, search_mode=cfg.search_mode,
                converter=OmegaConf.to_container(cfg.converter), network="net",
                export_dir=folder / "export")  # fmt: skip
            recorder = StageRecorder(dnas, phase.name, self.datamodule, self.example)
            epochs = sum(s.epochs for s in phase.stages)
            try:
                self.fit(module, epochs, [dnas, recorder, EpochPrinter(phase.name)], folder)
            except MisconfigurationException as err:  # an infeasible budget: one line
                if (error := budget_error(err, phase.budget or {})) is None:
                    raise
                raise error from None
            # weights_only=False: the full checkpoint, as before; said explicitly because
            # Lightning logs "`weights_only` was not set" for every save that leaves it out.
            module.trainer.save_checkpoint(folder / "phase.ckpt", weights_only=False)
            torch.save({"records": [r.__dict__ for r in recorder.records],
                        "history": dnas.history}, folder / "summary.pt")  # fmt: skip

        folder, reused = cached(self.cache, key, compute, self.out / "phases" / phase.name)
        ckpt = self.out / "checkpoints" / f"{phase.name}.ckpt"
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        if folder / "phase.ckpt" != ckpt:
            shutil.copyfile(folder / "phase.ckpt", ckpt)
        summary = torch.load(folder / "summary.pt", weights_only=False)
        summary.update(key=make_search_id(key), reused=reused, folder=str(folder))
        return (lambda: restore(start(), ckpt)), summary

    def finetune(self, build: Builder, after: list[str], epochs: int) -> LightningModule:
        """The module of the found network (``build()``) fine-tuned for ``epochs`` epochs
        after seeding with ``finetune_seed``; reused from the cache when this search was
        fine-tuned so before, resumable like the phases. The fine-tune's checkpoint is
        copied to ``checkpoints/finetune.ckpt``. With ``quantize`` the fine-tune trains the
        network's quantisation-aware version (prepared the same way when it is rebuilt to
        load a checkpoint: resume and reuse)."""
        cfg = self.cfg
        kind = cfg.get("quantize")
        plain = build
        build = lambda: int8.prepare(plain(), self.example, kind)  # noqa: E731
        if not epochs:
            seed_everything(cfg.finetune_seed, workers=True)
            return self.module(build(), final_epochs=epochs)

        trained: list[LightningModule] = []  # the module when computed here, not reused

        def compute(folder: Path) -> None:
            seed_everything(cfg.finetune_seed, workers=True)
            module = self.module(build(), final_epochs=epochs)
            self.fit(module, epochs, [EpochPrinter("finetune")], folder)
            module.trainer.save_checkpoint(folder / "finetune.ckpt", weights_only=False)
            trained.append(module)

        key = {**self.base, "after": after, "finetune_seed": cfg.finetune_seed,
               "finetune_epochs": epochs, "anneal": cfg.anneal_final}  # fmt: skip
        if kind is not None:  # absent for float runs: their cache entries stay valid
            key["quantize"] = kind
        folder, reused = cached(self.cache, key, compute, self.out / "finetune")
        print(f"fine-tune: {'reused' if reused else 'computed'} ({folder})")
        ckpt = self.out / "checkpoints" / "finetune.ckpt"
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        if folder / "finetune.ckpt" != ckpt:
            shutil.copyfile(folder / "finetune.ckpt", ckpt)
        if trained:
            return trained[0]
        module = self.module(build(), final_epochs=epochs)
        state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
        module.load_state_dict(state)
        return module

    def reference(self, epochs: int) -> Point:
        """The seed network trained for ``epochs`` (reused from the cache when possible), or
        only its costs when ``reference`` is off."""
        cfg = self.cfg
        costs = network_costs(instantiate(cfg.model.seed), self.example)
        if not cfg.reference:
            return point(costs, {}, {})

        def compute(folder: Path) -> None:
            seed_everything(cfg.seed, workers=True)
            module = self.module(instantiate(cfg.model.seed), final_epochs=epochs)
            self.fit(module, epochs, [EpochPrinter("reference")], folder)
            record = measure(module, "reference", "finetune", epochs, self.datamodule,
                             self.example)  # fmt: skip
            torch.save(record.__dict__, folder / "reference.pt")

        key = {**self.base, "reference_epochs": epochs, "anneal": cfg.anneal_final}
        folder, _ = cached(self.cache, key, compute, self.out / "reference")
        rec = torch.load(folder / "reference.pt", weights_only=False)
        return Point(rec["params"], rec["macs"], rec["val"], rec["test"])


def run(cfg: DictConfig, out: Path) -> RunResult:
    """Run the pipeline of ``cfg`` writing into ``out``; returns what ``results.json``
    holds (written atomically, last)."""
    start_time = time.perf_counter()
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    drop_lightning_tips()
    int8.check(cfg)
    app = Run(cfg, out)
    result = None
    try:
        result = _pipeline(app, start_time)
    finally:
        app.finish(result)
    return result


def _pipeline(app: Run, start_time: float) -> RunResult:
    cfg, out = app.cfg, app.out
    start_kind, phases = plan(cfg.method, app.budget)
    build: Builder = lambda: instantiate(cfg.model[start_kind])  # noqa: E731
    summaries, after = [], None
    for phase in phases:
        build, summary = app.search(phase, build, after)
        summaries.append(summary)
        after = summary["key"]
        print(f"phase {phase.name}: {'reused' if summary['reused'] else 'computed'} "
              f"({summary['folder']})")  # fmt: skip

    epochs = cfg.method.finetune_epochs
    module = app.finetune(build, [s["key"] for s in summaries], epochs)
    records = [r for s in summaries for r in s["records"]]
    kind = cfg.get("quantize")
    plain = build() if kind else module.net  # a QAT network's float structure: its costs
    final = measure(module, "finetune", "finetune", epochs, app.datamodule, app.example,
                    plain)  # fmt: skip
    stages = [StageRecord(**r) for r in records] + ([final] if epochs else [])
    reference = app.reference(total_epochs(phases, epochs))

    export = out / "export"
    export.mkdir(exist_ok=True)
    arch = {p.name: s["history"][-1]["arch"] for p, s in zip(phases, summaries, strict=True)}
    (export / "arch.json").write_text(json.dumps(arch, indent=1))
    applied = [h["arch"] for s in summaries for h in s["history"]]  # each phase's, in order
    save_export(module.net, applied, app.example, kind, export / "model.pt")
    q_entry, q_lines = None, []
    if kind:  # the int8 file is what a quantised run delivers: not optional, as onnx is
        q_entry, q_metrics = int8.write_and_measure(module.net, app.example, app.datamodule,
                                                    export)  # fmt: skip
        final = replace(final, val={**final.val, **q_metrics["val"]},
                        test={**final.test, **q_metrics["test"]})  # fmt: skip
        q_lines = int8.summary(q_entry, q_metrics)
    elif cfg.onnx:
        _write_onnx(module.net, app.example, export / "model.onnx")
    lambdas = {p.name: {cfg.cost: float(p.strength)} for p in phases}
    found = with_memory(Point(final.params, final.macs, final.val, final.test), plain,
                        app.example)  # fmt: skip
    seed_net = instantiate(cfg.model.seed)
    reference = with_memory(reference, seed_net, app.example)
    search_id = make_search_id({"method": cfg.method.name, "keys": [s["key"] for s in summaries]})
    result = RunResult(
        method=cfg.method.name, task=cfg.data.task, data=cfg.data.name, model=cfg.model.name,
        lambdas=lambdas, icv=float(cfg.icv), softmax=cfg.softmax.mode, seed=int(cfg.seed),
        finetune_seed=int(cfg.finetune_seed) if epochs else None, search_id=search_id,
        stages=stages, final=found, reference=reference, arch=arch,
        wall_s=time.perf_counter() - start_time, int8=q_entry, budgets=app.budget)  # fmt: skip
    result.save(out / "results.json")
    metric = "acc" if cfg.data.task == "classification" else "auc"
    print(f"\n{cfg.method.name} on {cfg.data.name}: seed network ({cfg.model.name}, trained "
          f"{total_epochs(phases, epochs)} epochs) vs found network")  # fmt: skip
    print(format_table(reference, found, layer_shapes(seed_net), layer_shapes(plain),
                       metric, ("seed", "found"), int8=q_entry, budgets=app.budget))  # fmt: skip
    for line in q_lines:
        print(line)
    print(f"results: {out / 'results.json'}  ({result.wall_s:.1f} s)")
    return result


def _write_onnx(net: nn.Module, example: torch.Tensor, path: Path) -> None:
    """``export/model.onnx`` with its onnxruntime check, or a line saying why not (a
    missing extra or a network the exporter cannot take does not fail the run)."""
    try:
        diff = export_onnx(net, example, path)
    except (ModuleNotFoundError, OnnxExportError) as err:
        print(f"ONNX export skipped: {err}")
        return
    print(f"ONNX: {path} (onnxruntime vs PyTorch max |diff| {diff:.2g})")


@hydra.main(version_base="1.3", config_path="pkg://lightning_dnas.conf", config_name="config")
def _hydra_main(cfg: DictConfig) -> None:
    out = Path(HydraConfig.get().runtime.output_dir)
    try:
        check_config(cfg)
        check_output_dir(out)
        OmegaConf.save(cfg, out / "config.yaml", resolve=True)
        run(cfg, out)
    except (ConfigError, DatasetNotFoundError) as err:
        print(f"lightning-dnas-train: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point; ``argv`` (default ``sys.argv[1:]``) are Hydra overrides and flags."""
    # Hydra's own error for budget.<unknown>=... does not list the costs: ours first.
    unknown = unknown_budget(sys.argv[1:] if argv is None else argv)
    if unknown is not None:
        print(f"lightning-dnas-train: error: {unknown}", file=sys.stderr)
        raise SystemExit(2)
    if argv is None:
        _hydra_main()
        return
    saved = sys.argv
    sys.argv = [saved[0] if saved else "lightning-dnas-train", *argv]
    try:
        _hydra_main()
    finally:
        sys.argv = saved
