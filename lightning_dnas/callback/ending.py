"""How a fit ends: its stage list run to the end, or stopped early, and ``fast_dev_run``.

A fit can stop before its last stage is done: ``Trainer(max_steps=)`` or ``max_time=``
runs out, the user presses Ctrl+C (Lightning turns the ``KeyboardInterrupt`` into
``on_exception``), or a callback other than EarlyStopping sets ``trainer.should_stop``.
Only EarlyStopping's decision ends a *stage* (its documented meaning: this stage has
converged); every other stop ends the *fit*. The callback then leaves the user a plain
network: a search stage's best state so far is exported (the files of an export written),
and a warning says what happened, what was exported and how to continue instead (the
checkpoints written before the stop still hold the search state, so resuming from one
continues exactly as before). This module words those decisions; the trainer reads they
need are in :mod:`.trainer_ops`.

``Trainer(fast_dev_run=n)`` (Lightning: ``n`` batches, one epoch, no checkpoints, no
loggers) would cut the fit after the first stage's first step; the callback instead runs
every stage for one epoch of those ``n`` batches (:func:`dev_run_stages`), so a smoke test
passes through every conversion, export and fine-tune of the real stage list.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from lightning.pytorch import Trainer
from lightning.pytorch.utilities import rank_zero_info

from ..stages import Stage
from . import config, trainer_ops
from .clock import StageClock

INTERRUPT = "a KeyboardInterrupt (Ctrl+C)"


def dev_run_stages(stages: Sequence[Stage]) -> list[Stage]:
    """``stages`` with one epoch each (patience dropped: one validation cannot run out of
    it), names unchanged so the export files keep theirs."""
    return [replace(s, epochs=1, patience=None, name=s.name) for s in stages]


def plan_epochs(trainer: Trainer, stages: Sequence[Stage]) -> list[Stage]:
    """The stage list this fit runs, the trainer's ``max_epochs`` set to its sum (said
    when it changes; fewer epochs than the stages need raise, :func:`.config.fit_epochs`).
    ``fast_dev_run``: every stage for one epoch (:func:`dev_run_stages`)."""
    if trainer_ops.fast_dev_run(trainer):
        stages = dev_run_stages(stages)
        trainer_ops.run_every_stage(trainer, len(stages))
        rank_zero_info(f"lightning_dnas: fast_dev_run: each of the {len(stages)} stages runs "
                       "one epoch")  # fmt: skip
    epochs = config.fit_epochs(stages, trainer.max_epochs)
    if epochs is not None:
        rank_zero_info(f"lightning_dnas: max_epochs {trainer.max_epochs} -> {epochs}, the "
                       "sum of the DNAS stages")  # fmt: skip
        trainer_ops.set_max_epochs(trainer, epochs)
    return list(stages)


def early_end_message(clock: StageClock, epoch: int, reason: str, exported: bool) -> str:
    """The warning of a fit stopped early, by ``reason``, at ``epoch`` of the ``clock``'s
    stage. ``exported``: its search network is exported (the clock's best state; without
    one, no validation having scored, the last state)."""
    stage, start, best = clock.stage, clock.start, clock.best
    best_epoch = None if best is None else best["epoch"]
    remaining = clock.stages[clock.index + 1:]
    where = (f"DNASCallback: the fit stopped at epoch {epoch}, in stage {stage.name} "
             f"(epochs {start}-{start + stage.epochs - 1}), by {reason}")  # fmt: skip
    if exported:
        state = (f"the state of its best validated epoch {best_epoch}" if best_epoch
                 is not None else "its last state (no validation scored one)")  # fmt: skip
        what = f"; exported {state} as `dnas.exported`"
        if stage.kind == "warmup":
            what += " (a warmup trains no architecture: nothing was removed)"
    else:
        what = "; `dnas.exported` is the network as the stop left it"
    skipped = ", ".join(s.name for s in remaining)
    rest = f"; not run: {skipped}" if skipped else ""
    resume = (". To continue the stage list instead, resume from a checkpoint written before "
              "the stop: trainer.fit(module, ..., ckpt_path=...) with a fresh module and "
              "callback")  # fmt: skip
    return where + what + rest + resume


__all__ = ["INTERRUPT", "dev_run_stages", "early_end_message", "plan_epochs"]
