"""The phases of a run: how a ``method`` config maps onto DNASCallback stage lists, and the
callback that measures each stage's network.

A run is one or two *search phases* (each one ``Trainer.fit`` with a
:class:`~lightning_dnas.DNASCallback` whose last stage is a search, so the fit ends with the
exported network) followed by the *final fine-tune* (a plain fit seeded with
``finetune_seed``). Splitting at these points is what lets a sweep reuse a phase: the
cascade's coarse phase (SuperNet search and intermediate fine-tune) does not depend on the
PIT lambda, and no search depends on the fine-tune seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from torch import Tensor, nn

from lightning_dnas.callback import DNASCallback
from lightning_dnas.nas.methods import METHODS
from lightning_dnas.stages import Stage, cascade_stages, default_stages, split_phases

from .report import network_costs
from .results import StageRecord


@dataclass(frozen=True)
class Phase:
    """One search phase: ``name`` (``"pit"``, ``"supernet"``, ``"pitsupernet"``), its
    stages, its lambda and the budget ``{cost: B}`` its last search lands on (``None``:
    none; only the run's last phase has one, its export being the final network)."""

    name: str
    stages: list[Stage]
    strength: float
    budget: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form (part of the phase's cache key). ``budget`` only when there is one: a
        phase without a budget (a cascade's SuperNet phase) has the same key in every run
        of a budget sweep, and is computed once."""
        out = {"name": self.name, "strength": self.strength,
               "stages": [s.to_dict() for s in self.stages]}  # fmt: skip
        if self.budget:
            out["budget"] = dict(self.budget)
        return out


def plan(method: Any, budget: dict[str, float] | None = None) -> tuple[str, list[Phase]]:
    """``(start network, phases)`` for a ``method`` config: the stage list that
    :mod:`lightning_dnas.stages` builds for it (without the final fine-tune, a fit of its
    own), cut into phases by :func:`~lightning_dnas.stages.split_phases`. The start network
    is ``"supernet"`` when the first search needs SuperNet choices, else ``"seed"``. A
    ``budget`` goes to the last phase only (a cascade's SuperNet phase does not use it)."""
    train = tuple(method.train)
    if method.name == "cascade":
        stages = cascade_stages(method.supernet_epochs, method.search_epochs, finetune=0,
                                warmup=method.warmup_epochs,
                                intermediate_finetune=method.intermediate_finetune_epochs,
                                patience=method.patience, train=train)  # fmt: skip
        strengths = [method.supernet_strength, method.strength]
    else:
        stages = default_stages(method.name, method.warmup_epochs, method.search_epochs, 0,
                                method.patience, train)  # fmt: skip
        strengths = [method.strength]
    parts = split_phases(stages)
    methods = [next(s.method for s in part if s.kind == "search") for part in parts]
    start = "supernet" if METHODS[methods[0]].searches_choices else "seed"
    last = len(parts) - 1
    return start, [Phase(m, part, strength, (budget or None) if i == last else None)
                   for i, (m, part, strength) in enumerate(zip(methods, parts, strengths,
                                                               strict=True))]  # fmt: skip


def total_epochs(phases: list[Phase], finetune_epochs: int) -> int:
    """Configured epochs of the whole pipeline (what the reference trains for)."""
    return sum(s.epochs for p in phases for s in p.stages) + finetune_epochs


class StageRecorder(Callback):
    """Measures the network each DNAS stage ended with (a search: the exported network):
    params, MACs, validation and test metrics. Put it after the DNASCallback."""

    def __init__(self, dnas: DNASCallback, prefix: str, datamodule: Any, example: Tensor) -> None:
        self.dnas, self.prefix = dnas, prefix
        self.datamodule, self.example = datamodule, example
        self.records: list[StageRecord] = []
        self._stage: Stage | None = None
        self._start = 0

    def state_dict(self) -> dict[str, Any]:
        """The records so far and the current stage (a resumed fit continues them)."""
        return {"records": [dict(r.__dict__) for r in self.records],
                "stage": None if self._stage is None else self._stage.to_dict(),
                "start": self._start}  # fmt: skip

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.records = [StageRecord(**r) for r in state_dict["records"]]
        stage = state_dict["stage"]
        self._stage = None if stage is None else Stage(**{**stage, "train": tuple(stage["train"])})
        self._start = int(state_dict["start"])

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """At a stage boundary (the callback has already moved on), record the last stage."""
        if self._stage is not None and self.dnas.stage.name != self._stage.name:
            self._record(trainer, pl_module)
        if self._stage is None or self.dnas.stage.name != self._stage.name:
            self._stage, self._start = self.dnas.stage, trainer.current_epoch

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Record the last stage."""
        self._record(trainer, pl_module)

    def _record(self, trainer: Trainer, pl_module: LightningModule) -> None:
        assert self._stage is not None
        self.records.append(measure(
            pl_module, f"{self.prefix}.{self._stage.name}", self._stage.kind,
            trainer.current_epoch - self._start, self.datamodule, self.example))  # fmt: skip


def measure(module: Any, name: str, kind: str, epochs: int, datamodule: Any,
            example: Tensor, structure: nn.Module | None = None) -> StageRecord:  # fmt: skip
    """A :class:`StageRecord` of ``module.net`` as it is now; ``structure``: a plain network
    of the same structure to count params and MACs on (for a quantisation-aware one)."""
    params, macs = network_costs(module.net if structure is None else structure, example)
    val = module.evaluate(datamodule.val_dataloader())
    test = module.evaluate(datamodule.test_dataloader())
    return StageRecord(name, kind, epochs, params, macs, val, test)


class EpochPrinter(Callback):
    """One line per epoch (the progress bar is off): the logged losses, accuracy and the
    search's hard costs."""

    KEYS = ("train_loss", "val_loss", "val_acc", "dnas/hard_params", "dnas/hard_macs",
            "dnas/hard_peak_ram", "dnas/hard_flash")  # the memory costs: when searched

    def __init__(self, label: str) -> None:
        self.label = label

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Print the epoch's metrics."""
        metrics = trainer.callback_metrics
        parts = [f"{k.removeprefix('dnas/hard_')} {float(metrics[k]):.4g}"
                 for k in self.KEYS if k in metrics]  # fmt: skip
        print(f"[{self.label}] epoch {trainer.current_epoch + 1:3d}/{trainer.max_epochs}  "
              + "  ".join(parts), flush=True)  # fmt: skip
