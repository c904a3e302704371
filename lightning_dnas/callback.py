"""``DNASCallback``: warmup, search, export and fine-tune inside one ``Trainer.fit``.

The only module of the package that knows Lightning. The engine (``nas/``) converts,
costs and exports; this callback decides *when*, feeds the regulariser into the user's
backward pass, owns the architecture optimizer and keeps everything it owns in the
checkpoint. How a stage boundary works is described in docs/CALLBACK.md.
"""

from __future__ import annotations

import copy
import json
import math
import random
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torchmetrics import Metric

from .nas.cost.models import resolve_costs
from .nas.engine import DNAS
from .nas.methods import METHODS
from .nas.modules import set_submodule
from .nas.supernet.combiner import MODES
from .restore import (
    NetworkStructure,
    StructureKeeper,
    encode_options,
    example_record,
)
from .stages import Stage, default_stages, parse_stages

SEARCH_MODES = ("joint", "alternating")


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
        target: budgets: the regulariser becomes ``lambda * max(0, cost - target)``.
        icv: strength of the ICV polarisation loss (SuperNet choices).
        stages: a list of :class:`~lightning_dnas.stages.Stage` (or dicts), e.g. a cascade.
        warmup_epochs, search_epochs, finetune_epochs, patience: the default stages.
        network: attribute path of the network in the LightningModule; by default the one
            child module holding trainable parameters (torchmetrics metrics ignored).
        example_input: an input of the network; else ``example_input_array``, else the
            first training batch's first element.
        softmax: combiner mode of every choice (``"softmax"``, ``"gumbel"``,
            ``"hard_softmax"``, ``"hard_gumbel"``); ``None`` keeps each module's own.
        temperature: a number, or a schedule ``f(epoch_in_search) -> T`` (see
            ``lightning_dnas.temperature_schedule``), applied at each search epoch start.
        arch_lr: learning rate of the default architecture optimizer (Adam, no weight decay).
        arch_optimizer: ``f(param_groups) -> Optimizer`` replacing the default.
        search_mode: ``"joint"`` (architecture steps on the training batches) or
            ``"alternating"`` (on validation batches, first-order DARTS style).
        monitor, mode: the metric that picks the best search state (``mode="min"``: the
            metric plus ``lambda * hard cost``; ``"max"``: the metric alone) and drives
            ``patience``.
        converter: options of the converter (``include``, ``exclude``, ``train_channels``,
            ``train_rf``, ``train_dilation``, ``leaf_modules``).
        export_dir: where each export's architecture JSON and module are written (default:
            ``<trainer.log_dir>/dnas``); ``False`` writes nothing.
        check_export: compare each exported network with the search network.

    Logged with ``pl_module.log`` (so to every logger of the trainer): during search
    stages, per training step and as epoch means (``_step``/``_epoch`` suffixes),
    ``dnas/reg`` (``lambda * cost``, without ICV), ``dnas/soft_<cost>`` for each cost, and
    ``dnas/icv`` when the network has SuperNet choices; at the end of each epoch of a
    warmup or search stage ``dnas/hard_<cost>`` and, with choices, ``dnas/temperature`` (or
    ``dnas/temperature/<choice>`` when the choices' temperatures differ) and
    ``dnas/theta/<choice>/<candidate>`` (``softmax(alpha / T)``). With a ``WandbLogger``,
    each export also logs the tables ``dnas/<stage>/layers`` (see
    :meth:`~lightning_dnas.nas.engine.DNAS.layer_widths`) and ``dnas/<stage>/choices``,
    the artifacts ``dnas-arch-<run id>`` (``arch.json``: the :attr:`history` record) and
    ``dnas-model-<run id>`` (``model.pt``: ``torch.save`` of the exported network), one
    version per export aliased with the stage name, and sets ``dnas/final_<cost>`` in the
    run summary. The callback never starts or finishes a W&B run.
    """

    def __init__(
        self,
        method: str = "pit",
        cost: Any = "params",
        strength: float | Mapping[str, float] = 1e-6,
        target: float | Mapping[str, float] | None = None,
        icv: float = 0.0,
        stages: Sequence[Stage | Mapping[str, Any]] | None = None,
        warmup_epochs: int = 0,
        search_epochs: int = 10,
        finetune_epochs: int = 10,
        patience: int | None = None,
        network: str | None = None,
        example_input: Any = None,
        softmax: str | None = None,
        temperature: float | Callable[[int], float] | None = None,
        arch_lr: float = 1e-3,
        arch_optimizer: Callable[[list[dict[str, Any]]], torch.optim.Optimizer] | None = None,
        search_mode: str = "joint",
        monitor: str = "val_loss",
        mode: str = "min",
        converter: Mapping[str, Any] | None = None,
        export_dir: str | Path | bool | None = None,
        check_export: bool = True,
    ) -> None:
        super().__init__()
        if stages is None:
            if method not in METHODS:
                raise ValueError(f"unknown method {method!r}; valid methods: {list(METHODS)}")
            stages = default_stages(method, warmup_epochs, search_epochs, finetune_epochs,
                                    patience)  # fmt: skip
        self.stages = parse_stages(stages)
        self.costs = resolve_costs(cost)
        self._cost_arg = cost
        self.strength = strength
        self.target = target
        self.icv = float(icv)
        if softmax is not None and softmax not in MODES:
            raise ValueError(f"unknown softmax {softmax!r}; valid: {list(MODES)}")
        self.softmax = softmax
        self.temperature = temperature
        self.arch_lr = arch_lr
        self.arch_optimizer_factory = arch_optimizer
        if search_mode not in SEARCH_MODES:
            raise ValueError(f"unknown search_mode {search_mode!r}; valid: {list(SEARCH_MODES)}")
        self.search_mode = search_mode
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.monitor, self.mode = monitor, mode
        self.network = network
        self.example_input = example_input
        self.converter = dict(converter or {})
        self.export_dir = export_dir
        self.check_export = check_export
        self.exported: nn.Module | None = None
        self.history: list[dict[str, Any]] = []
        self.search: DNAS | None = None
        self.arch_optimizer: torch.optim.Optimizer | None = None
        self._keeper: StructureKeeper | None = None
        self._fit_ready = False
        self._example: Any = None
        self._stage = 0
        self._stage_start = 0
        self._stage_over = False
        self._best: dict[str, Any] | None = None
        self._wait = 0
        self._scored_epoch = -1
        self._term_batch: tuple[int, int] | None = None
        self._last_terms: dict[str, float] = {}
        self._pending: dict[str, Any] = {}
        self._val_iter: Any = None

    # -- set-up -----------------------------------------------------------------------------
    @property
    def stage(self) -> Stage:
        """The stage being run."""
        return self.stages[self._stage]

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """``fit``: find the network and the example input, check the configuration,
        convert. ``validate``/``test``/``predict`` (before any fit): only attach the
        structure hooks, so that ``ckpt_path=`` of any stage of a DNAS fit loads."""
        if stage != "fit":
            if self._keeper is None:
                self._attach_keeper(pl_module, self.example_input
                                    if self.example_input is not None
                                    else pl_module.example_input_array)  # fmt: skip
            return
        if self._fit_ready:
            return
        self._check_options()
        self._example = self._find_example(trainer, pl_module)
        self._check_epochs(trainer)
        self._check_precision(trainer, pl_module)
        if self._keeper is None:
            self._attach_keeper(pl_module, self._example)
        else:  # attached by an earlier validate/test: now with the fit's example input
            self._keeper.example = self._example
            self._keeper.structure.example = example_record(self._example)
        self._run_after_early_stopping(trainer)
        self._enter(trainer, pl_module, 0, initial=True)
        self._fit_ready = True

    def _attach_keeper(self, pl_module: LightningModule, example: Any) -> None:
        """Record the seed network and attach the hooks that keep the network's structure
        in the module's ``state_dict`` and rebuild it from a loaded one."""
        self.network = self.network or _find_network(pl_module)
        net = pl_module.get_submodule(self.network)
        if isinstance(net, DNAS):
            raise MisconfigurationException(f"`{self.network}` is already a search network; "
                                            "give DNASCallback the seed network")  # fmt: skip
        record = {} if example is None else example_record(example)
        structure = NetworkStructure(self.network, example=record)
        self._keeper = StructureKeeper(copy.deepcopy(net), structure, example, self._cost_arg,
                                       self._adopt)  # fmt: skip
        self._keeper.attach(pl_module)

    def _run_after_early_stopping(self, trainer: Trainer) -> None:
        """Move this callback after every EarlyStopping, so that its ``on_train_epoch_end``
        sees their stop decision and turns it into the end of a stage that is not the last
        (ModelCheckpoints stay last, as Lightning orders them)."""
        callbacks = trainer.callbacks  # type: ignore[attr-defined]
        stoppers = [i for i, cb in enumerate(callbacks) if isinstance(cb, EarlyStopping)]
        if stoppers and callbacks.index(self) < stoppers[-1]:
            callbacks.remove(self)
            callbacks.insert(stoppers[-1], self)

    def _check_options(self) -> None:
        for stage in self.stages:
            if stage.kind in ("warmup", "search"):
                allowed = METHODS[stage.method].converter_options  # type: ignore[index]
                bad = set(self.converter) - set(allowed)
                if bad:
                    raise MisconfigurationException(
                        f"converter options {sorted(bad)} do not apply to method "
                        f"{stage.method!r}; valid: {list(allowed)}")
            if stage.strength is not None:
                self._lambdas(stage)
        self._lambdas(None)

    def _lambdas(self, stage: Stage | None) -> dict[str, float]:
        value = self.strength if stage is None or stage.strength is None else stage.strength
        first = next(iter(self.costs))
        lambdas = dict(value) if isinstance(value, Mapping) else {first: value}
        unknown = set(lambdas) - set(self.costs)
        if unknown:
            raise MisconfigurationException(f"strength names unknown costs {sorted(unknown)}; "
                                            f"the costs are {list(self.costs)}")  # fmt: skip
        try:
            return {k: float(v) for k, v in lambdas.items()}
        except (TypeError, ValueError) as err:
            raise MisconfigurationException(f"strength must be numbers, got {value!r}") from err

    def _find_example(self, trainer: Trainer, pl_module: LightningModule) -> Any:
        if self.example_input is not None:
            return self.example_input
        if pl_module.example_input_array is not None:
            return pl_module.example_input_array
        loader = trainer.fit_loop._data_source.dataloader()
        batch = next(iter(loader))
        first = batch[0] if isinstance(batch, (tuple, list)) else batch
        if not isinstance(first, Tensor):
            raise MisconfigurationException(
                "DNASCallback could not take an example input from the first training batch "
                f"(its first element is a {type(first).__name__}); pass example_input= or set "
                "the module's example_input_array")
        return first[:8].detach().clone()

    def _check_epochs(self, trainer: Trainer) -> None:
        total = sum(s.epochs for s in self.stages)
        limit = trainer.max_epochs
        plan = ", ".join(f"{s.name} {s.epochs}" for s in self.stages)
        if limit is not None and 0 <= limit < total:
            raise MisconfigurationException(
                f"the DNAS stages need {total} epochs ({plan}) but Trainer(max_epochs={limit}); "
                f"set max_epochs={total} or shorten the stages")
        if limit is None or limit < 0 or limit > total:
            trainer.fit_loop.max_epochs = total

    def _check_precision(self, trainer: Trainer, pl_module: LightningModule) -> None:
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        if scaler is not None and not pl_module.automatic_optimization:
            raise MisconfigurationException(
                "DNASCallback supports fp16 grad scaling with automatic optimization only; "
                "use bf16-mixed or 32-true with manual optimization")
        if self.search_mode == "alternating" and trainer.num_val_batches == [] and not (
                trainer.limit_val_batches):  # fmt: skip
            raise MisconfigurationException("alternating search needs validation batches")

    # -- stages -----------------------------------------------------------------------------
    def _enter(self, trainer: Trainer, pl_module: LightningModule, index: int,
               initial: bool = False) -> None:  # fmt: skip
        """Make the network what stage ``index`` needs: export the current search network
        if that stage does not continue it, convert if it needs a search network."""
        stage = self.stages[index]
        changed = False
        if self.search is not None and not (
            stage.kind in ("warmup", "search") and stage.method == self.search.method
            and self.stages[index - 1].kind == "warmup"
        ):
            self._export(trainer, pl_module)
            changed = True
        if stage.kind in ("warmup", "search") and self.search is None:
            self._convert(pl_module, stage.method)  # type: ignore[arg-type]
            changed = True
        self._stage, self._stage_over = index, False
        self._stage_start = trainer.current_epoch
        self._best, self._wait = None, 0
        if changed and not initial:
            self._reset_optimizers(trainer, pl_module)
        rank_zero_info(f"lightning_dnas: stage {stage.name} ({stage.epochs} epochs) starts at "
                       f"epoch {trainer.current_epoch}")  # fmt: skip

    def _convert(self, pl_module: LightningModule, method: str) -> None:
        assert self._keeper is not None and self.network is not None
        net = pl_module.get_submodule(self.network)
        device = next(net.parameters()).device
        example = _to(self._example, device)
        allowed = METHODS[method].converter_options
        options = {k: v for k, v in self.converter.items() if k in allowed}
        search = METHODS[method].cls(net, example, cost=self._cost_arg, **options)
        search.to(device)
        structure = copy.deepcopy(self._keeper.structure)
        structure.method, structure.options = method, encode_options(options)
        self._keeper.structure = structure
        set_submodule(pl_module, self.network, search)
        self._adopt(search)

    def _adopt(self, net: nn.Module) -> None:
        """Called whenever the network changes (also by a checkpoint load): set up the
        search wrapper's combiner and a fresh architecture optimizer."""
        self.search = net if isinstance(net, DNAS) else None
        self.arch_optimizer = None
        if self.search is None:
            return
        if self.softmax is not None:
            self.search.set_softmax(self.softmax)
        groups = self._arch_groups()
        if groups:
            factory = self.arch_optimizer_factory or (
                lambda g: torch.optim.Adam(g, lr=self.arch_lr, weight_decay=0.0))
            self.arch_optimizer = factory(groups)

    def _arch_groups(self) -> list[dict[str, Any]]:
        assert self.search is not None
        logits = [c.alpha for c in self.search.choices.values()]
        masks = [*self.search.channel_masks.parameters(), *self.search.tap_masks.parameters()]
        return [{"params": p, "name": n} for n, p in (("logits", logits), ("masks", masks)) if p]

    def _export(self, trainer: Trainer, pl_module: LightningModule) -> None:
        assert self.search is not None and self._keeper is not None
        search, stage = self.search, self.stage
        if self._best is not None:
            search.load_state_dict(self._best["state"])
        exported = search.export(check=self.check_export)
        spec = search.arch()
        widths = search.layer_widths()
        record = {"stage": stage.name, "method": search.method,
                  "best_epoch": None if self._best is None else self._best["epoch"],
                  "costs": {n: search.hard_cost(n) for n in search.costs}, "arch": spec}
        self.history.append(record)
        structure = copy.deepcopy(self._keeper.structure)
        structure.applied.append(spec)
        structure.method, structure.options = None, {}
        self._keeper.structure = structure
        set_submodule(pl_module, self.network, exported)  # type: ignore[arg-type]
        self.search, self.arch_optimizer, self.exported = None, None, exported
        self._reset_monitors(trainer)
        self._write_export(trainer, record, exported)
        self._log_export(trainer, record, widths, exported)
        costs = ", ".join(f"{n} {v:,.0f}" for n, v in record["costs"].items())
        rank_zero_info(f"lightning_dnas: exported after {stage.name}: {costs}")

    def _write_export(self, trainer: Trainer, record: dict[str, Any], net: nn.Module) -> None:
        if self.export_dir is False or not trainer.is_global_zero:
            return
        root = Path(self.export_dir) if self.export_dir not in (None, True) else Path(
            trainer.log_dir or trainer.default_root_dir) / "dnas"  # fmt: skip
        root.mkdir(parents=True, exist_ok=True)
        tmp = root / f".{record['stage']}.json.tmp"
        tmp.write_text(json.dumps(record, indent=1))
        tmp.replace(root / f"{record['stage']}.json")
        torch.save(net, root / f"{record['stage']}.pt")

    def _log_export(self, trainer: Trainer, record: dict[str, Any],
                    widths: list[dict[str, Any]], net: nn.Module) -> None:  # fmt: skip
        """Log an export to every ``WandbLogger`` of the trainer (tables, artifacts, summary);
        wandb is imported only when such a logger exists."""
        if not trainer.is_global_zero:
            return
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                _log_export_wandb(logger, trainer.global_step, record, widths, net)

    def _reset_monitors(self, trainer: Trainer) -> None:
        """A new network starts new bests: ModelCheckpoint's and EarlyStopping's records of
        the previous network's metrics would otherwise win against the fine-tune."""
        for cb in trainer.callbacks:  # type: ignore[attr-defined]
            if isinstance(cb, ModelCheckpoint):
                cb.best_k_models, cb.kth_best_model_path = {}, ""
                cb.best_model_score, cb.best_model_path = None, ""
                cb.kth_value = torch.tensor(math.inf if cb.mode == "min" else -math.inf)
            elif isinstance(cb, EarlyStopping):
                cb.wait_count, cb.stopped_epoch = 0, 0
                cb.best_score = torch.tensor(math.inf if cb.mode == "min" else -math.inf)

    def _reset_optimizers(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Fresh optimizers and schedulers from the module's ``configure_optimizers`` for
        the new parameters; DDP re-wrapped around the new network."""
        strategy = trainer.strategy
        if isinstance(strategy.model, DistributedDataParallel):
            strategy.model = strategy._setup_model(strategy.model.module)  # type: ignore[attr-defined]
        strategy.setup_optimizers(trainer)
        self._strip(trainer)

    def _strip(self, trainer: Trainer) -> None:
        """Take the architecture parameters out of the user's optimizers: they have their
        own optimizer, never the user's weight decay or learning-rate schedule."""
        if self.search is None:
            return
        arch = {id(p) for p in self.search.nas_parameters()}
        arch.update(id(c.alpha) for c in self.search.choices.values())
        for opt in trainer.optimizers:
            for group in opt.param_groups:
                group["params"] = [p for p in group["params"] if id(p) not in arch]

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Strip architecture parameters from the user's optimizers; apply resumed state."""
        self._strip(trainer)
        if "arch_optimizer" in self._pending and self.arch_optimizer is not None:
            self.arch_optimizer.load_state_dict(self._pending.pop("arch_optimizer"))
        if "rng" in self._pending:
            _set_rng(self._pending.pop("rng"))

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Advance to the next stage when this one is over; set the epoch's temperature."""
        while self._stage_over or trainer.current_epoch - self._stage_start >= self.stage.epochs:
            if self._stage + 1 >= len(self.stages):
                break
            self._enter(trainer, pl_module, self._stage + 1)
        if self.search is not None and self.search.choices and self.temperature is not None:
            t = self.temperature
            epoch = trainer.current_epoch - self._stage_start
            self.search.set_temperature(float(t(epoch) if callable(t) else t))

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Log hard costs, temperatures and choice probabilities; turn an EarlyStopping stop
        during a stage that is not the last into the end of that stage; stop after the last
        stage."""
        if self.search is not None:
            for name in self.search.costs:
                pl_module.log(f"dnas/hard_{name}", float(self.search.hard_cost(name)))
            temperatures = {n: float(c.temperature) for n, c in self.search.choices.items()}
            if len(set(temperatures.values())) == 1:
                pl_module.log("dnas/temperature", next(iter(temperatures.values())))
            else:
                for cname, t in temperatures.items():
                    pl_module.log(f"dnas/temperature/{cname}", t)
            for cname, choice in self.search.choices.items():
                probs = torch.softmax(choice.alpha.detach() / choice.temperature, 0)
                for cand, p in zip(choice.names, probs.tolist(), strict=True):
                    pl_module.log(f"dnas/theta/{cname}/{cand}", p)
        last = self._stage + 1 >= len(self.stages)
        if trainer.should_stop and not last:
            trainer.should_stop = False
            self._stage_over = True
        done = self._stage_over or (
            trainer.current_epoch + 1 - self._stage_start >= self.stage.epochs)
        if last and done:
            trainer.should_stop = True
            if self.search is not None:  # the fit ends with a search: export its best state
                self._export(trainer, pl_module)
            self.exported = pl_module.get_submodule(self.network)  # type: ignore[arg-type]

    # -- the regulariser and the architecture step ---------------------------------------
    def _searching(self, trainer: Trainer) -> bool:
        return self.search is not None and self.stage.kind == "search" and trainer.training

    def _term(self) -> Tensor:
        assert self.search is not None
        lambdas = self._lambdas(self.stage)
        # The soft costs are computed once: the regulariser takes them and they are logged.
        soft = {name: self.search.soft_cost(name) for name in self.search.costs}
        reg = self.search.regularizer(lambdas, self.target, costs=soft)
        self._last_terms = {"dnas/reg": float(reg.detach())}
        self._last_terms.update({f"dnas/soft_{n}": float(v.detach()) for n, v in soft.items()})
        if self.search.choices:
            icv = self.search.icv()
            self._last_terms["dnas/icv"] = float(icv.detach())
            if self.icv:
                reg = reg + self.icv * icv
        return reg

    def on_before_backward(self, trainer: Trainer, pl_module: LightningModule,
                           loss: Tensor) -> None:  # fmt: skip
        """Add ``lambda * cost (+ icv * ICV)`` to the loss about to be backpropagated, in
        place, normalised and scaled as Lightning treated the loss (divided by
        ``accumulate_grad_batches``, multiplied by the fp16 grad scale): exactly once per
        training batch (manual optimization may call backward several times)."""
        if not self._searching(trainer) or self.search_mode != "joint":
            return
        key = (trainer.current_epoch, trainer.fit_loop.epoch_loop.batch_idx)
        if not pl_module.automatic_optimization and key == self._term_batch:
            return
        self._term_batch = key
        term = self._term()
        if pl_module.automatic_optimization:
            term = term / trainer.accumulate_grad_batches
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        if scaler is not None:
            term = scaler.scale(term)
        loss.add_(term.to(loss.dtype))

    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule,
                                 optimizer: torch.optim.Optimizer) -> None:  # fmt: skip
        """Automatic optimization: step the architecture with the user's optimizer (so at
        the same accumulation boundaries), before Lightning clips the user's gradients."""
        if pl_module.automatic_optimization:
            self._arch_step(trainer)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:  # fmt: skip
        """Log the regulariser terms; manual optimization: the architecture step of this
        batch; alternating search: the architecture step on a validation batch."""
        for key, value in self._last_terms.items():
            pl_module.log(key, value, on_step=True, on_epoch=True)
        # Logged once: a fine-tune after the search must not repeat the last search values.
        self._last_terms = {}
        if not pl_module.automatic_optimization:
            self._arch_step(trainer)
        if self._searching(trainer) and self.search_mode == "alternating":
            self._alternating_step(trainer, pl_module)

    def _arch_step(self, trainer: Trainer) -> None:
        opt = self.arch_optimizer
        if opt is None:
            return
        if not self._searching(trainer) or self.search_mode != "joint":
            opt.zero_grad(set_to_none=True)
            return
        for group in opt.param_groups:
            if group.get("name") not in self.stage.train:
                for p in group["params"]:
                    p.grad = None
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        if scaler is not None:
            scaler.unscale_(opt)
            scaler.step(opt)
        else:
            opt.step()
        opt.zero_grad(set_to_none=True)

    def _alternating_step(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """One first-order architecture step on the next validation batch: gradients of
        ``task loss + regulariser`` w.r.t. the architecture parameters only (the weights'
        gradients are left alone), averaged over DDP ranks."""
        assert self.search is not None and self.arch_optimizer is not None
        batch = self._next_val_batch(trainer, pl_module)
        params = [p for g in self.arch_optimizer.param_groups
                  if g.get("name") in self.stage.train for p in g["params"]]  # fmt: skip
        log = pl_module.log
        pl_module.log = lambda *a, **k: None  # type: ignore[method-assign]
        try:
            with trainer.precision_plugin.forward_context():
                out = pl_module.training_step(batch, 0)
        finally:
            pl_module.log = log  # type: ignore[method-assign]
        loss = out["loss"] if isinstance(out, Mapping) else out
        total = loss.float() + self._term()
        grads = torch.autograd.grad(total, params, allow_unused=True)
        for p, g in zip(params, grads, strict=True):
            p.grad = None if g is None else trainer.strategy.reduce(g, reduce_op="mean")
        self.arch_optimizer.step()
        self.arch_optimizer.zero_grad(set_to_none=True)

    def _next_val_batch(self, trainer: Trainer, pl_module: LightningModule) -> Any:
        if self._val_iter is None:
            self._val_iter = iter(trainer.fit_loop.epoch_loop.val_loop._data_source.dataloader())
        try:
            batch = next(self._val_iter)
        except StopIteration:
            self._val_iter = None
            return self._next_val_batch(trainer, pl_module)
        return trainer.strategy.batch_to_device(batch, pl_module.device)

    # -- best state and patience ----------------------------------------------------------
    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Score the epoch: keep a snapshot of the best search state; count patience."""
        if trainer.sanity_checking or self._scored_epoch == trainer.current_epoch:
            return
        self._scored_epoch = trainer.current_epoch
        metric = trainer.callback_metrics.get(self.monitor)
        if metric is None:
            if self.stage.kind == "search" or self.stage.patience:
                rank_zero_warn(f"DNASCallback: monitor {self.monitor!r} is not logged "
                               f"(logged: {sorted(trainer.callback_metrics)}); the last "
                               "search state is exported and patience is off")  # fmt: skip
            return
        score = float(metric)
        if self.search is not None and self.stage.kind == "search" and self.mode == "min":
            score += sum(lam * self.search.hard_cost(n)
                         for n, lam in self._lambdas(self.stage).items())  # fmt: skip
        better = self._best is None or (
            score < self._best["score"] if self.mode == "min" else score > self._best["score"])
        if better:
            self._best = {"score": score, "epoch": trainer.current_epoch, "state": None}
            if self.search is not None and self.stage.kind == "search":
                self._best["state"] = {k: v.detach().clone()
                                       for k, v in self.search.state_dict().items()}
            self._wait = 0
        else:
            self._wait += 1
            if self.stage.patience is not None and self._wait >= self.stage.patience:
                self._stage_over = True
                rank_zero_info(f"lightning_dnas: {self.stage.name} ends early at epoch "
                               f"{trainer.current_epoch} (patience {self.stage.patience})")

    # -- checkpointing --------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Stage position, best snapshot, architecture optimizer, history and RNG states."""
        return {
            "stage": self._stage, "stage_start": self._stage_start,
            "stage_over": self._stage_over, "best": self._best, "wait": self._wait,
            "scored_epoch": self._scored_epoch, "history": self.history,
            "arch_optimizer": None if self.arch_optimizer is None
            else self.arch_optimizer.state_dict(),
            "rng": _get_rng(),
        }  # fmt: skip

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Take the state back; the network structure was already rebuilt from the weights'
        structure entry, optimizer and RNG states are applied in ``on_fit_start``."""
        self._stage, self._stage_start = state_dict["stage"], state_dict["stage_start"]
        self._stage_over, self._best = state_dict["stage_over"], state_dict["best"]
        self._wait, self._scored_epoch = state_dict["wait"], state_dict["scored_epoch"]
        self.history = state_dict["history"]
        if state_dict["arch_optimizer"] is not None:
            self._pending["arch_optimizer"] = state_dict["arch_optimizer"]
        self._pending["rng"] = state_dict["rng"]


def _find_network(pl_module: LightningModule) -> str:
    """The one child module holding trainable parameters (metrics ignored)."""
    found = [name for name, child in pl_module.named_children()
             if not isinstance(child, Metric)
             and any(p.requires_grad for p in child.parameters())]  # fmt: skip
    if not found:
        raise MisconfigurationException(
            f"{type(pl_module).__name__} has no child module with trainable parameters when "
            "DNASCallback converts it (callback setup, before the module's setup() and "
            "configure_model()): build the network in __init__, or pass network='<name>'")
    if len(found) != 1:
        raise MisconfigurationException(
            f"DNASCallback cannot tell which child of {type(pl_module).__name__} is the network "
            f"to search: children with trainable parameters: {found}; pass network='<name>'")
    return found[0]


LAYER_COLUMNS = ["layer", "type", "out_channels", "original", "taps", "kernel", "dilation"]
CHOICE_COLUMNS = ["choice", "index", "candidate"]


def _log_export_wandb(logger: WandbLogger, step: int, record: dict[str, Any],
                      widths: list[dict[str, Any]], net: nn.Module) -> None:  # fmt: skip
    """Tables of the layer widths and chosen candidates, the architecture and the exported
    network as artifacts (a version per export, aliased with the stage name), final costs
    in the summary."""
    import wandb  # optional: only runs that use a WandbLogger need it

    stage = record["stage"]
    choices = [[name, c["index"], c["name"]] for name, c in record["arch"]["choices"].items()]
    logger.log_table(f"dnas/{stage}/layers", LAYER_COLUMNS,
                     [[row[c] for c in LAYER_COLUMNS] for row in widths], step=step)  # fmt: skip
    logger.log_table(f"dnas/{stage}/choices", CHOICE_COLUMNS, choices, step=step)
    run = logger.experiment
    meta = {"stage": stage, "method": record["method"], "costs": record["costs"]}
    arch = wandb.Artifact(f"dnas-arch-{run.id}", type="dnas-architecture", metadata=meta)
    with arch.new_file("arch.json") as f:
        json.dump(record, f, indent=1)
    model = wandb.Artifact(f"dnas-model-{run.id}", type="model", metadata=meta)
    with model.new_file("model.pt", mode="wb") as f:
        torch.save(net, f)
    for artifact in (arch, model):
        run.log_artifact(artifact, aliases=[stage, "latest"])
    run.summary.update({f"dnas/final_{name}": value for name, value in record["costs"].items()})


def _to(example: Any, device: torch.device) -> Any:
    if isinstance(example, Tensor):
        return example.to(device)
    if isinstance(example, (tuple, list)):
        return type(example)(_to(e, device) for e in example)
    return example


def _get_rng() -> dict[str, Any]:
    """The global RNG states, as types that Lightning's ``weights_only`` loading accepts."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    numpy_state = [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached]
    return {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate()}


def _set_rng(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(state["python"])


__all__ = ["DNASCallback"]
