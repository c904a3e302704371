"""``DNASCallback``: warmup, search, export and fine-tune inside one ``Trainer.fit``.

Its one job: be the only Lightning-aware piece of the package. The engine (``nas/``)
converts, costs and exports; this package decides *when* and wires the engine into a fit.
The hooks in this file are short and delegate to one part each:

* :mod:`.clock`: the stage and patience state machine (no Lightning): which stage, since
  when, the best score, when a stage is over, what a boundary does (export, convert).
* :mod:`.arch_step`: the regulariser added to the user's loss and the architecture
  optimizer (joint and alternating steps).
* :mod:`.network`: the network's place in the module: convert, export in place, keep its
  structure in the checkpoint.
* :mod:`.config`, :mod:`.trainer_ops`: every configuration error; every touch of Lightning.
* :mod:`.sinks`: what an export writes: files, W&B tables and artifacts.
* :mod:`.ending`, :mod:`.notes`, :mod:`.compiled`: early ends; every message; torch.compile.

How a stage boundary works is described in docs/CALLBACK.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor, nn

from ..nas.cost.models import resolve_costs
from ..nas.engine import DNAS
from ..restore import StructureKeeper
from ..stages import Stage
from . import compiled, config, ending, network, notes, sinks, trainer_ops
from .arch_step import ArchStep, check_budget, default_arch_optimizer, stage_lambdas
from .clock import Scored, StageClock
from .config import SEARCH_MODES
from .sinks import CHOICE_COLUMNS, LAYER_COLUMNS


class DNASCallback(Callback):
    """Differentiable architecture search of a LightningModule's network, as a callback.

    Add it to ``Trainer(callbacks=[...])`` and call ``trainer.fit`` once: the callback
    converts the network in ``setup``, adds ``lambda * cost (+ icv * ICV)`` to every
    training loss of a search stage (in ``on_before_backward``), steps its own optimizer on
    the architecture parameters, and at the end of each search stage exports the best
    search state, swaps the plain exported network into the module in place and calls the
    module's ``configure_optimizers`` again for the fine-tune. After the fit,
    :attr:`exported` is the found network and :attr:`history` lists each export.

    Args:
        method: ``"pit"``, ``"supernet"`` or ``"pitsupernet"`` (builds the stages
            ``warmup_epochs -> search_epochs -> finetune_epochs``); ignored with ``stages``.
        cost: ``"params"``, ``"macs"``, ``"macs_no_bias"``, a ``CostModel``, or a dict of
            several ``{name: cost}``.
        strength: lambda, a number for the first cost or ``{cost name: lambda}``.
        target: the hinge ``lambda * max(0, cost - target)`` (kept as it was; it does not land).
        budget: ``{cost: B}``: the last search lands on it (``strength``/``target`` unused there).
        icv: strength of the ICV polarisation loss (SuperNet choices).
        stages: a list of :class:`~lightning_dnas.stages.Stage` (or dicts), e.g. a cascade.
        warmup_epochs, search_epochs, finetune_epochs, patience: the default stages.
        network: attribute path of the network (a list: searched together through the
            module's forward, docs/CALLBACK.md); default: the one child with trainable params.
        example_input: an input of the network; else ``example_input_array``, else the
            first training batch's first element.
        softmax: combiner mode of every choice (``"softmax"``, ``"gumbel"``,
            ``"hard_softmax"``, ``"hard_gumbel"``); ``None`` keeps each module's own.
        temperature: a number, or a schedule ``f(epoch_in_search) -> T`` (see
            ``lightning_dnas.temperature_schedule``), applied at each search epoch start.
        arch_lr: lr of the default architecture Adam (defaults: docs/CALLBACK.md, Defaults).
        arch_optimizer: ``f(param_groups) -> Optimizer`` replacing the default.
        search_mode: ``"joint"`` (architecture steps on the training batches) or
            ``"alternating"`` (on validation batches, first-order DARTS style).
        monitor, mode: the metric that picks the best search state (``mode="min"``: the
            metric plus ``lambda * hard cost``; ``"max"``: the metric alone) and drives
            ``patience``.
        converter: options of the converter (``include``, ``exclude``, ``train_channels``,
            ``train_rf``, ``train_dilation``, ``leaf_modules``; each method takes those of
            its class, :data:`lightning_dnas.nas.methods.METHODS`).
        export_dir: where each export's architecture JSON and module are written (default:
            ``<trainer.log_dir>/dnas``); ``False`` writes nothing.
        check_export: compare each exported network with the search network.
        quantize: ``"int8"``: a quantisation-aware last fine-tune, then :attr:`int8` (sinks.py).

    Raises:
        ValueError: here, for an unknown method, softmax, search mode or mode, or a bad
            stage list or cost (``TypeError`` for a cost of the wrong type); the errors
            that need the module or the trainer are raised in ``setup`` (see
            docs/CALLBACK.md, "Configuration errors").

    What it logs (``dnas/reg``, ``dnas/soft_<cost>``, ``dnas/hard_<cost>``, temperatures,
    choice probabilities; W&B tables, artifacts and summary at each export) and when:
    docs/CALLBACK.md, "Logged values". It never starts or finishes a W&B run.
    """

    def __init__(
        self,
        method: str = "pit",
        cost: Any = "params",
        strength: float | Mapping[str, float] = 1e-5,
        target: float | Mapping[str, float] | None = None,
        budget: Mapping[str, float] | None = None,
        icv: float = 0.0,
        stages: Sequence[Stage | Mapping[str, Any]] | None = None,
        warmup_epochs: int = 0,
        search_epochs: int = 10,
        finetune_epochs: int = 10,
        patience: int | None = None,
        network: str | Sequence[str] | None = None,
        example_input: Any = None,
        softmax: str | None = None,
        temperature: float | Callable[[int], float] | None = None,
        arch_lr: float = 1e-2,
        arch_optimizer: Callable[[list[dict[str, Any]]], torch.optim.Optimizer] | None = None,
        search_mode: str = "joint",
        monitor: str = "val_loss",
        mode: str = "min",
        converter: Mapping[str, Any] | None = None,
        export_dir: str | Path | bool | None = None,
        check_export: bool = True,
        quantize: str | None = None,
    ) -> None:
        super().__init__()
        # The checks run in the one-file callback's order, so that a call with several
        # errors still reports the same one first.
        self.stages = config.build_stages(method, stages, warmup_epochs, search_epochs,
                                          finetune_epochs, patience, quantize)  # fmt: skip
        self.costs, self._cost_arg = resolve_costs(cost), cost
        config.check_arguments(softmax, search_mode, mode)
        self.strength, self.target, self.icv = strength, target, float(icv)
        self.budget = check_budget(budget, self.costs)
        self.softmax, self.temperature = softmax, temperature
        self.arch_lr, self.arch_optimizer_factory = arch_lr, arch_optimizer
        self.search_mode, self.monitor, self.mode = search_mode, monitor, mode
        self.network, self.example_input = config.network_arg(network), example_input
        self.converter = dict(converter or {})
        self.export_dir, self.check_export = export_dir, check_export
        self.exported: nn.Module | None = None
        self.int8: Any = None  # the int8 ONNX export's report (quantize only, global rank 0)
        self.history: list[dict[str, Any]] = []
        self._clock = StageClock(self.stages, mode)
        self._arch = ArchStep()
        self._val_batches = trainer_ops.ValBatches()
        self._keeper: StructureKeeper | None = None
        # _fitting: this trainer run is a fit (else the callback is inert); _fit_over: the
        # stage list ran to its end, or the fit ended early.
        self._fit_ready = self._fitting = self._fit_over = False
        self._example: Any = None
        self._pending: dict[str, Any] = {}  # resumed state applied in on_fit_start

    @property
    def stage(self) -> Stage:
        """The stage being run."""
        return self._clock.stage

    @property
    def search(self) -> DNAS | None:
        """The search network in the module (``None`` while it is a plain network)."""
        return self._arch.search

    @property
    def arch_optimizer(self) -> torch.optim.Optimizer | None:
        """The optimizer of the architecture parameters (``None`` without a search)."""
        return self._arch.optimizer

    def _lambdas(self) -> dict[str, float]:
        return stage_lambdas(self.strength, self.costs, self.stage)

    # -- set-up -----------------------------------------------------------------------------
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """``fit``: find the network and the example input, check the configuration,
        convert. ``validate``/``test``/``predict`` (before any fit): only attach the
        structure hooks, so that ``ckpt_path=`` of any stage of a DNAS fit loads."""
        self._fitting = stage == "fit"
        if stage != "fit":
            if self._keeper is None:
                self._attach_keeper(trainer, pl_module, trainer_ops.given_example(self, pl_module))
            return
        if self._fit_ready:
            return
        config.check_options(self.stages, self.converter, self.strength, self.costs)
        self._example, source = trainer_ops.find_example(self.example_input, trainer, pl_module)
        self.stages = ending.plan_epochs(trainer, self.stages)  # fast_dev_run: 1 epoch each
        self._clock = StageClock(self.stages, self.mode)
        compiled.make_room(pl_module, self._clock.networks())
        config.check_precision(trainer_ops.grad_scaler(trainer),
                               pl_module.automatic_optimization, self.search_mode,
                               trainer_ops.has_no_val_batches(trainer))  # fmt: skip
        if self._keeper is None:
            self._attach_keeper(trainer, pl_module, self._example)
        else:  # attached by an earlier validate/test: now with the fit's example input
            network.set_example(self._keeper, self._example)
        trainer_ops.move_after_early_stopping(trainer, self)
        with config.example_errors(self._example, source):
            self._enter(trainer, pl_module, 0, initial=True)
        self._fit_ready = True

    def _attach_keeper(self, trainer: Trainer, pl_module: LightningModule, example: Any) -> None:
        """Find the network (``configure_model`` run first if needed); keep its structure."""
        trainer_ops.configure_model_early(trainer, pl_module, self.network)
        self.network = self.network or config.find_network(pl_module)
        self._keeper = network.attach_keeper(pl_module, self.network, example,
                                             self._cost_arg, self._adopt)  # fmt: skip

    def _adopt(self, net: nn.Module | None) -> None:
        """Called whenever the network changes (also by a checkpoint load)."""
        factory = self.arch_optimizer_factory or default_arch_optimizer(self.arch_lr)
        self._arch.adopt(net, self.softmax, factory)

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Strip architecture parameters from the user's optimizers; apply resumed state."""
        trainer_ops.strip_from_optimizers(trainer, self._arch.arch_parameter_ids())
        if "arch_optimizer" in self._pending and self.arch_optimizer is not None:
            self.arch_optimizer.load_state_dict(self._pending.pop("arch_optimizer"))
        self._arch.start_budget(self.budget, self._clock, self._pending.pop("budget", None))
        if "rng" in self._pending:
            trainer_ops.set_rng(self._pending.pop("rng"))

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Give the module its own ``configure_model`` back (see ``_attach_keeper``)."""
        trainer_ops.restore_configure_model(pl_module)

    # -- stage boundaries -------------------------------------------------------------------
    def _enter(self, trainer: Trainer, pl_module: LightningModule, index: int,
               initial: bool = False) -> None:  # fmt: skip
        """Make the network what stage ``index`` needs (the clock says how), then start it;
        after a change, fresh optimizers (``initial``: Lightning has not built any yet)."""
        step = self._clock.boundary(index, None if self.search is None else self.search.method)
        if step.export:
            self._export(trainer, pl_module)
        if step.convert is not None:
            assert self._keeper is not None and self.network is not None
            search = network.convert(pl_module, self.network, self._keeper, self._example,
                                     step.convert, self.converter, self._cost_arg)  # fmt: skip
            self._adopt(search)
            if not any(network.searchable(search).values()):
                rank_zero_warn(notes.nothing_searchable(self.network, step.convert))
        quantized = network.quantize(pl_module, self._keeper, self.stages[index].quantize)
        self._clock.enter(index, trainer.current_epoch)
        self._arch.start_budget(self.budget, self._clock)
        if (step.export or step.convert is not None or quantized) and not initial:
            trainer_ops.reset_optimizers(trainer)
            trainer_ops.strip_from_optimizers(trainer, self._arch.arch_parameter_ids())
        rank_zero_info(notes.stage_starts(self.stage, trainer.current_epoch))

    def _export(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Swap the best state's plain network into the module; write and log it."""
        assert self.search is not None and self._keeper is not None and self.network
        steps, lr, reg = self._arch.progress()  # before the export releases the search
        exported, record, widths = network.export(
            pl_module, self.network, self._keeper, self.search, self.stage.name,
            self._arch.feasible_best(self._clock.best), self.check_export)
        self.history.append(record)
        self._arch.release()
        self.exported = exported
        trainer_ops.reset_monitors(trainer)
        sinks.publish(trainer, self, record, widths)
        if (warning := notes.nothing_removed(record, steps, lr, reg)) is not None:
            rank_zero_warn(warning)

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Advance to the next stage when this one is over; set the epoch's temperature."""
        while (index := self._clock.next_stage(trainer.current_epoch)) is not None:
            self._enter(trainer, pl_module, index)
        self._arch.set_temperature(self.temperature,
                                   self._clock.epoch_in_stage(trainer.current_epoch))
        self._arch.set_ramp(trainer_ops.stage_steps(trainer, self.stage) // 2)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Log the epoch's architecture metrics; EarlyStopping's stop ends the stage; after
        the last stage (exported first if it is a search) the fit stops."""
        if self.search is not None:
            pl_module.log_dict(self._arch.epoch_metrics())
        end = self._clock.end_epoch(trainer.current_epoch, trainer.should_stop,
                                    searching=self.search is not None,
                                    ends_stage=trainer_ops.early_stopping_stopped(trainer))
        trainer.should_stop = end.should_stop
        if end.export:
            self._export(trainer, pl_module)
        if end.fit_over:
            self._fit_over = True
            self.exported = network.current(pl_module, self.network)  # type: ignore[arg-type]
            sinks.write_final(trainer, self)  # final.pt/.onnx (a QAT fit: its int8 ONNX)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """A fit loop that ended before the stage list did (``max_steps``, ``max_time``, a
        stop request that is not EarlyStopping's): end the fit early (:mod:`.ending`)."""
        if not self._fit_over:
            self._end_early(trainer, pl_module, trainer_ops.stop_reason(trainer))

    def on_exception(self, trainer: Trainer, pl_module: LightningModule,
                     exception: BaseException) -> None:  # fmt: skip
        """Ctrl+C during the fit: end it early (other exceptions leave the network be)."""
        if isinstance(exception, KeyboardInterrupt) and self._fit_ready and not self._fit_over:
            self._end_early(trainer, pl_module, ending.INTERRUPT)

    def _end_early(self, trainer: Trainer, pl_module: LightningModule, reason: str) -> None:
        """Export the best search state (if searching); write it as final; warn (ending.py)."""
        self._fit_over, searching = True, self.search is not None
        if searching:
            self._export(trainer, pl_module)
        self.exported = network.current(pl_module, self.network)  # type: ignore[arg-type]
        sinks.write_final(trainer, self)
        rank_zero_warn(ending.early_end_message(self._clock, trainer.current_epoch, reason,
                                                searching))

    # -- the regulariser and the architecture step ---------------------------------------
    def _joint_search(self, trainer: Trainer) -> bool:
        return self._searching(trainer) and self.search_mode == "joint"

    def _searching(self, trainer: Trainer) -> bool:
        return self.search is not None and self.stage.kind == "search" and trainer.training

    def _regularizer(self, loss: Tensor | None = None) -> Tensor:
        return self._arch.regularizer(self._lambdas(), self.target, self.icv, loss)

    def on_before_backward(self, trainer: Trainer, pl_module: LightningModule,
                           loss: Tensor) -> None:  # fmt: skip
        """Add ``lambda * cost (+ icv * ICV)`` to the loss in place, scaled as Lightning
        scaled the loss (accumulation, fp16 grad scale); once per training batch."""
        if not self._joint_search(trainer):
            return
        auto = pl_module.automatic_optimization
        term = lambda: self._regularizer(loss)  # noqa: E731  # the task loss scales a budget
        self._arch.add_to_loss(loss, term, trainer_ops.batch_position(trainer),
                               once_per_batch=not auto,
                               divide=trainer.accumulate_grad_batches if auto else None,
                               scaler=trainer_ops.grad_scaler(trainer))  # fmt: skip

    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule,
                                 optimizer: torch.optim.Optimizer) -> None:  # fmt: skip
        """Automatic optimization: step the architecture with the user's optimizer."""
        if pl_module.automatic_optimization:
            self._arch_step(trainer)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:  # fmt: skip
        """Log the regulariser terms; the manual-optimization or alternating arch step."""
        pl_module.log_dict(self._arch.take_terms(), on_step=True, on_epoch=True)
        if not pl_module.automatic_optimization:
            self._arch_step(trainer)
        if self._searching(trainer) and self.search_mode == "alternating":
            self._alternating_step(trainer, pl_module)

    def _arch_step(self, trainer: Trainer) -> None:
        if self._joint_search(trainer):
            self._arch.step(self.stage.train, trainer_ops.grad_scaler(trainer))
        else:  # the user's backward reached the architecture: drop those gradients
            self._arch.drop_grads()

    def _alternating_step(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """A first-order architecture step on a validation batch (DDP-averaged gradients)."""
        loss = trainer_ops.training_loss_on(trainer, pl_module,
                                            self._val_batches.next(trainer, pl_module))
        self._arch.alternating_step(self.stage.train, loss, self._regularizer(),
                                    lambda g: trainer.strategy.reduce(g, reduce_op="mean"))

    # -- best state and patience ----------------------------------------------------------
    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Score the epoch: keep a snapshot of the best search state; count patience."""
        epoch = trainer.current_epoch
        if not self._fitting or trainer.sanity_checking or not self._clock.claim(epoch):
            return  # outside a fit (validate/test of a checkpoint) the callback is inert
        metric = trainer.callback_metrics.get(self.monitor)
        if metric is None:
            if self._clock.expects_metric:
                rank_zero_warn(notes.monitor_missing(self.monitor, trainer.callback_metrics))
            return
        searching = self.search is not None and self.stage.kind == "search"
        score = float(metric)
        if searching and self.mode == "min":
            score += self._arch.hard_penalty(self._lambdas())
        scored = self._clock.record(epoch, score, self._arch.snapshot if searching else None)
        if scored is Scored.PATIENCE_OUT:
            rank_zero_info(notes.patience_out(self.stage, epoch))

    # -- checkpointing --------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Stage position, best snapshot, architecture optimizer, history and RNG states."""
        opt = self.arch_optimizer
        return {**self._clock.state_dict(), "history": self.history,
                "arch_optimizer": None if opt is None else opt.state_dict(),
                "rng": trainer_ops.get_rng(), "budget": self._arch.budget_state()}  # fmt: skip

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Take the state back; the network structure was already rebuilt from the weights'
        structure entry, optimizer and RNG states are applied in ``on_fit_start``. Outside a
        fit (``validate(ckpt_path=)`` with any stage list) nothing: the callback is inert."""
        if not self._fitting:
            return
        self._clock.load_state_dict(state_dict)
        self.history = state_dict["history"]
        if state_dict["arch_optimizer"] is not None:
            self._pending["arch_optimizer"] = state_dict["arch_optimizer"]
        self._pending["rng"], self._pending["budget"] = state_dict["rng"], state_dict.get("budget")


__all__ = ["CHOICE_COLUMNS", "LAYER_COLUMNS", "SEARCH_MODES", "DNASCallback"]
