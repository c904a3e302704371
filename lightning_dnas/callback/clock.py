"""The stage clock: which stage runs, since when, its best score and patience, and what a
stage boundary does (export, convert).

Plain Python on plain numbers, no Lightning: the callback feeds it epoch numbers, stop
requests and validation scores from the trainer and acts on its answers, so the whole
stage and patience logic is tested with hand-written epoch sequences
(tests/callback/test_clock.py).

An epoch of a fit, as the callback drives the clock::

    epoch start        while (i := clock.next_stage(epoch)) is not None: boundary, enter(i)
    each validation    if clock.claim(epoch): clock.record(epoch, score, snapshot)
    epoch end          end = clock.end_epoch(epoch, trainer.should_stop, searching,
                                          ends_stage=<EarlyStopping's stop>)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import Enum
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:  # annotations only: the clock imports nothing of the package at run time
    from ..stages import Stage

SEARCH_KINDS = ("warmup", "search")  # the stages that run on a search network


class Scored(Enum):
    """What :meth:`StageClock.record` made of a validation score."""

    BETTER = "better"  # a new best: patience restarts
    WORSE = "worse"  # patience counts one more
    PATIENCE_OUT = "patience_out"  # patience ran out: the stage is over


class Boundary(NamedTuple):
    """What entering a stage does to the network: ``export`` the current search network
    first; then ``convert`` with this method (``None``: keep the network as it is)."""

    export: bool
    convert: str | None


class EpochEnd(NamedTuple):
    """The clock's answer at an epoch end: the value ``trainer.should_stop`` must take;
    whether the fit is over (the last stage is done); whether to export before it ends (it
    ends with a search)."""

    should_stop: bool
    fit_over: bool
    export: bool


class StageClock:
    """The position in a stage list and the stage's best-so-far and patience bookkeeping.

    Args:
        stages: the parsed stage list (:func:`~lightning_dnas.stages.parse_stages`).
        mode: ``"min"`` or ``"max"``: whether a lower or a higher score is better.

    Attributes (all in :meth:`state_dict`): ``index`` of the running stage, ``start`` (the
    epoch it started at), ``over`` (patience or a stop request ended it early), ``best``
    (``{"score", "epoch", "state"}`` of its best validation, ``None`` before one),
    ``wait`` (validations since the best), ``scored_epoch`` (the last epoch scored).
    """

    def __init__(self, stages: Sequence[Stage], mode: str = "min") -> None:
        self.stages = stages
        self.mode = mode
        self.index = 0
        self.start = 0
        self.over = False
        self.best: dict[str, Any] | None = None
        self.wait = 0
        self.scored_epoch = -1

    @property
    def stage(self) -> Stage:
        """The running stage."""
        return self.stages[self.index]

    @property
    def is_last(self) -> bool:
        """Whether the running stage is the last of the list."""
        return self.index + 1 >= len(self.stages)

    def epoch_in_stage(self, epoch: int) -> int:
        """``epoch`` counted from the start of the running stage (0 at its first epoch)."""
        return epoch - self.start

    # -- stage boundaries -------------------------------------------------------------------
    def next_stage(self, epoch: int) -> int | None:
        """At the start of ``epoch``: the index of the stage to enter, or ``None`` to stay
        (the stage still has epochs and was not ended early, or it is the last)."""
        if (self.over or epoch - self.start >= self.stage.epochs) and not self.is_last:
            return self.index + 1
        return None

    def boundary(self, index: int, method: str | None) -> Boundary:
        """What entering stage ``index`` does, the network being a search network of
        ``method`` (``None``: a plain network).

        A search network is exported unless the new stage continues it: a search right
        after its own warmup (same method, same network). A warmup or search stage that
        then has no search network converts with its method.
        """
        stage = self.stages[index]
        # For the first stage ``index - 1`` wraps to the last one. A search network is there
        # at the first stage only when an earlier validate/test loaded a search checkpoint;
        # it is then exported (a stage list never ends with a warmup).
        continues = (stage.kind in SEARCH_KINDS and stage.method == method
                     and self.stages[index - 1].kind == "warmup")  # fmt: skip
        export = method is not None and not continues
        searching = method is not None and not export
        convert = stage.method if stage.kind in SEARCH_KINDS and not searching else None
        return Boundary(export, convert)

    def networks(self) -> int:
        """How many distinct networks the stage list runs, from the first stage's network
        to the export after the last search: one, plus one per export, per conversion after
        the first stage (a first-stage conversion replaces the seed before it runs) and for
        the first quantised stage (a quantisation-aware copy). Under ``torch.compile`` each
        of them is one cache entry of every compiled frame that runs it."""
        count, method, quantized = 1, None, False
        for index, stage in enumerate(self.stages):
            step = self.boundary(index, method)
            if step.export:
                count, method = count + 1, None
            if step.convert is not None:
                count, method = count + (index > 0), step.convert
            if stage.quantize is not None and not quantized:
                count, quantized = count + 1, True
        return count + (method is not None)

    def enter(self, index: int, epoch: int) -> None:
        """Stage ``index`` starts at ``epoch``: fresh best score and patience."""
        self.index, self.over = index, False
        self.start = epoch
        self.best, self.wait = None, 0

    def end_epoch(self, epoch: int, stop_requested: bool, searching: bool,
                  ends_stage: bool = True) -> EpochEnd:  # fmt: skip
        """At the end of ``epoch``, with ``stop_requested`` the trainer's stop flag,
        ``searching`` whether the network is a search network and ``ends_stage`` whether
        the stop is one that ends a stage (EarlyStopping's: "this stage has converged").

        Such a stop ends the running stage: in a stage that is not the last, the flag is
        cleared and the next stage starts; in the last one, the fit is over (and exports
        if it ends with a search network). Any other stop request (``ends_stage`` False: a
        Timer, a user's callback) stops the fit as asked, without "fit over": the callback
        then ends the fit early (:mod:`.ending`). The fit is also over when the last stage
        has run all its epochs.
        """
        if stop_requested and ends_stage:
            stop_requested = False
            self.over = True
        done = self.over or epoch + 1 - self.start >= self.stage.epochs
        fit_over = self.is_last and done
        return EpochEnd(should_stop=stop_requested or fit_over, fit_over=fit_over,
                        export=fit_over and searching)  # fmt: skip

    # -- best score and patience ------------------------------------------------------------
    @property
    def expects_metric(self) -> bool:
        """Whether the running stage needs a score (a search picks its best state by it;
        a stage with patience ends by it)."""
        return self.stage.kind == "search" or bool(self.stage.patience)

    def claim(self, epoch: int) -> bool:
        """Whether a validation of ``epoch`` is the first one (the one scored): with several
        validations per epoch only the first counts, once."""
        if self.scored_epoch == epoch:
            return False
        self.scored_epoch = epoch
        return True

    def record(self, epoch: int, score: float,
               snapshot: Callable[[], Any] | None = None) -> Scored:  # fmt: skip
        """Count a validation ``score`` of ``epoch``. A new best keeps ``snapshot()`` (only
        then called; ``None`` keeps no state) in ``best["state"]`` and restarts patience;
        otherwise patience counts, and the stage is over once it reaches the stage's
        ``patience``."""
        if self.best is None or (score < self.best["score"] if self.mode == "min"
                                 else score > self.best["score"]):  # fmt: skip
            self.best = {"score": score, "epoch": epoch, "state": None}
            if snapshot is not None:
                self.best["state"] = snapshot()
            self.wait = 0
            return Scored.BETTER
        self.wait += 1
        if self.stage.patience is not None and self.wait >= self.stage.patience:
            self.over = True
            return Scored.PATIENCE_OUT
        return Scored.WORSE

    # -- checkpointing ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The clock's state under the callback's checkpoint keys (unchanged since the
        one-file callback, so older checkpoints load)."""
        return {"stage": self.index, "stage_start": self.start, "stage_over": self.over,
                "best": self.best, "wait": self.wait, "scored_epoch": self.scored_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Take back :meth:`state_dict` (extra keys of the callback's state are ignored)."""
        self.index, self.start = state["stage"], state["stage_start"]
        self.over, self.best = state["stage_over"], state["best"]
        self.wait, self.scored_epoch = state["wait"], state["scored_epoch"]


__all__ = ["Boundary", "EpochEnd", "Scored", "StageClock"]
