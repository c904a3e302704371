"""The stage clock alone, on hand-computed epoch sequences (no trainer, no network)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lightning_dnas.callback.clock import Boundary, EpochEnd, Scored, StageClock
from lightning_dnas.stages import Stage, cascade_stages, parse_stages


def _walk(clock: StageClock, epochs: int) -> list[int]:
    """The stage index at each epoch of a fit where nothing ends a stage early."""
    seen = []
    for epoch in range(epochs):
        while (index := clock.next_stage(epoch)) is not None:
            clock.enter(index, epoch)
        seen.append(clock.index)
        clock.end_epoch(epoch, stop_requested=False, searching=False)
    return seen


def test_clock_module_imports_no_lightning() -> None:
    """Loaded on its own (not through the callback package), the clock needs neither
    Lightning nor the rest of lightning_dnas."""
    path = Path(__file__).parents[2] / "lightning_dnas" / "callback" / "clock.py"
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('clock', {str(path)!r})\n"
        "clock = importlib.util.module_from_spec(spec); spec.loader.exec_module(clock)\n"
        "assert not any(m.split('.')[0] in ('lightning', 'lightning_dnas') for m in sys.modules)\n"
        "assert clock.StageClock([]).index == 0\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_stages_follow_their_epoch_counts() -> None:
    # warmup 2 (epochs 0-1), search 3 (2-4), fine-tune 2 (5-6).
    clock = StageClock(parse_stages([Stage("warmup", 2, "pit"), Stage("search", 3, "pit"),
                                     Stage("finetune", 2)]))  # fmt: skip
    assert _walk(clock, 7) == [0, 0, 1, 1, 1, 2, 2]
    assert clock.start == 5 and clock.epoch_in_stage(6) == 1
    assert clock.next_stage(7) is None, "the last stage never advances"


def test_the_fit_is_over_after_the_last_stage_and_exports_if_it_searches() -> None:
    clock = StageClock(parse_stages([Stage("search", 2, "pit")]))
    end = clock.end_epoch(0, stop_requested=False, searching=True)
    assert end == EpochEnd(should_stop=False, fit_over=False, export=False)
    end = clock.end_epoch(1, stop_requested=False, searching=True)
    assert end == EpochEnd(should_stop=True, fit_over=True, export=True)
    # The same end with a plain network (the fit ends with a fine-tune): nothing to export.
    end = clock.end_epoch(1, stop_requested=False, searching=False)
    assert end == EpochEnd(should_stop=True, fit_over=True, export=False)


def test_a_stop_request_ends_a_stage_that_is_not_the_last_and_is_cleared() -> None:
    # search 6 (epochs 0-5), fine-tune 5: EarlyStopping asks to stop after epoch 1.
    stages = parse_stages([Stage("search", 6, "pit"), Stage("finetune", 5)])
    clock = StageClock(stages)
    end = clock.end_epoch(1, stop_requested=True, searching=True)
    assert end == EpochEnd(should_stop=False, fit_over=False, export=False)
    assert clock.over
    assert clock.next_stage(2) == 1, "the search ends at epoch 2 though 4 epochs remain"
    clock.enter(1, 2)
    assert clock.stage is stages[1] and not clock.over
    # In the last stage EarlyStopping's stop ends it, so the fit is over (and a search
    # network would be exported): epoch 3 is 2 epochs short of the fine-tune's 5.
    end = clock.end_epoch(3, stop_requested=True, searching=True)
    assert end == EpochEnd(should_stop=True, fit_over=True, export=True)


def test_a_stop_that_is_not_early_stopping_stops_the_fit_without_ending_the_stage() -> None:
    # search 6, fine-tune 5: a Timer or a user's callback asks to stop after epoch 1. The
    # stage is not over and the fit is not "over" either: the callback ends it early.
    clock = StageClock(parse_stages([Stage("search", 6, "pit"), Stage("finetune", 5)]))
    end = clock.end_epoch(1, stop_requested=True, searching=True, ends_stage=False)
    assert end == EpochEnd(should_stop=True, fit_over=False, export=False)
    assert not clock.over and clock.next_stage(2) is None
    # No stop request: ends_stage changes nothing.
    end = clock.end_epoch(2, stop_requested=False, searching=True, ends_stage=False)
    assert end == EpochEnd(should_stop=False, fit_over=False, export=False)


def test_patience_keeps_the_best_epoch_and_ends_the_stage() -> None:
    # As tests/callback/test_stages.py: search epochs score 3, 1, 2, 2 with patience 2:
    # best at epoch 1; epoch 2 waits 1, epoch 3 waits 2 = patience: over, fine-tune at 4.
    clock = StageClock(parse_stages([Stage("search", 5, "pit", patience=2),
                                     Stage("finetune", 2)]))  # fmt: skip
    snapshots = []

    def snapshot() -> dict[str, int]:
        snapshots.append(len(snapshots))
        return {"n": len(snapshots)}

    results = [clock.record(epoch, score, snapshot)
               for epoch, score in enumerate([3.0, 1.0, 2.0, 2.0])]  # fmt: skip
    assert results == [Scored.BETTER, Scored.BETTER, Scored.WORSE, Scored.PATIENCE_OUT]
    assert clock.best == {"score": 1.0, "epoch": 1, "state": {"n": 2}}
    assert len(snapshots) == 2, "a snapshot is taken for new bests only"
    assert clock.wait == 2 and clock.over
    assert clock.end_epoch(3, stop_requested=False, searching=True).should_stop is False
    assert clock.next_stage(4) == 1
    clock.enter(1, 4)
    assert clock.best is None and clock.wait == 0 and not clock.over


def test_mode_max_and_equal_scores() -> None:
    clock = StageClock(parse_stages([Stage("search", 9, "pit", patience=3)]), mode="max")
    scores = [1.0, 3.0, 3.0, 2.0, 4.0, 0.0]
    results = [clock.record(e, s) for e, s in enumerate(scores)]
    # An equal score is not better: it counts towards patience like a worse one.
    assert results == [Scored.BETTER, Scored.BETTER, Scored.WORSE, Scored.WORSE,
                       Scored.BETTER, Scored.WORSE]  # fmt: skip
    assert clock.best == {"score": 4.0, "epoch": 4, "state": None} and clock.wait == 1
    assert not clock.over


def test_without_patience_a_stage_runs_all_its_epochs() -> None:
    clock = StageClock(parse_stages([Stage("search", 3, "pit"), Stage("finetune", 1)]))
    assert [clock.record(e, 5.0 + e) for e in range(3)] == [Scored.BETTER, Scored.WORSE,
                                                            Scored.WORSE]  # fmt: skip
    assert not clock.over and clock.next_stage(2) is None and clock.next_stage(3) == 1


def test_only_the_first_validation_of_an_epoch_is_claimed() -> None:
    clock = StageClock(parse_stages([Stage("search", 3, "pit")]))
    assert [clock.claim(e) for e in (0, 0, 1, 1, 1, 2)] == [True, False, True, False, False,
                                                            True]  # fmt: skip


@pytest.mark.parametrize("stage, expected", [
    (Stage("search", 1, "pit"), True),
    (Stage("warmup", 1, "pit"), False),
    (Stage("warmup", 1, "pit", patience=2), True),
    (Stage("finetune", 1), False),
    (Stage("finetune", 1, patience=1), True),
])  # fmt: skip
def test_a_stage_expects_a_metric_when_it_searches_or_has_patience(stage, expected) -> None:
    assert StageClock([stage]).expects_metric is expected


def test_boundaries_of_the_cascade() -> None:
    # 0 warmup supernet, 1 search supernet, 2 fine-tune, 3 search pit, 4 fine-tune.
    clock = StageClock(cascade_stages(warmup=1, supernet=2, intermediate_finetune=1, pit=2,
                                      finetune=1))  # fmt: skip
    assert clock.boundary(0, None) == Boundary(export=False, convert="supernet")
    assert clock.boundary(1, "supernet") == Boundary(export=False, convert=None), (
        "a search continues the network its warmup trained")
    assert clock.boundary(2, "supernet") == Boundary(export=True, convert=None)
    assert clock.boundary(3, None) == Boundary(export=False, convert="pit")
    assert clock.boundary(4, "pit") == Boundary(export=True, convert=None)


def test_boundaries_between_two_searches() -> None:
    # Different methods, no fine-tune between: export the first, convert for the second.
    clock = StageClock(cascade_stages(supernet=1, pit=1, intermediate_finetune=0, finetune=0))
    assert clock.boundary(1, "supernet") == Boundary(export=True, convert="pit")
    # The same method twice (not after a warmup): the second search starts from the export.
    clock = StageClock(parse_stages([Stage("search", 1, "pit"), Stage("search", 1, "pit")]))
    assert clock.boundary(1, "pit") == Boundary(export=True, convert="pit")
    # A search network found at the first stage (loaded by an earlier validate) is exported
    # and converted again; a plain one is only converted.
    assert clock.boundary(0, "pit") == Boundary(export=True, convert="pit")
    assert clock.boundary(0, None) == Boundary(export=False, convert="pit")


def test_state_dict_keys_are_the_checkpoint_keys_and_round_trip() -> None:
    stages = parse_stages([Stage("search", 4, "pit", patience=3), Stage("finetune", 2)])
    clock = StageClock(stages)
    clock.enter(0, 0)
    clock.claim(1)
    clock.record(0, 2.0, lambda: {"w": 1})
    clock.record(1, 3.0)
    state = clock.state_dict()
    # The keys of the one-file callback's checkpoints: old checkpoints must load.
    assert state == {"stage": 0, "stage_start": 0, "stage_over": False,
                     "best": {"score": 2.0, "epoch": 0, "state": {"w": 1}}, "wait": 1,
                     "scored_epoch": 1}  # fmt: skip
    other = StageClock(stages)
    other.load_state_dict({**state, "history": [], "rng": None})
    assert other.state_dict() == state


@pytest.mark.parametrize(("stages", "networks"), [
    # the search network (replacing the seed before it runs) and its export at the fit end
    ([Stage("search", 2, "pit")], 2),
    # warmup and search share one search network; its export fine-tunes
    ([Stage("warmup", 2, "pit"), Stage("search", 3, "pit"), Stage("finetune", 1)], 2),
    # a search after a fine-tune converts the first export: two searches, two exports
    ([Stage("search", 2, "pit"), Stage("finetune", 1), Stage("search", 2, "pit"),
      Stage("finetune", 1)], 4),
    # a quantised fine-tune adds its quantisation-aware copy
    ([Stage("search", 2, "pit"), Stage("finetune", 1, quantize="int8")], 3),
    # two searches in a row: the second converts the first's export
    ([Stage("search", 2, "supernet"), Stage("search", 2, "pit")], 4),
])  # fmt: skip
def test_networks_counts_every_network_the_stage_list_runs(stages, networks) -> None:
    assert StageClock(parse_stages(stages)).networks() == networks


def test_networks_of_the_thesis_cascade() -> None:
    """SuperNet search, its export fine-tuned, PIT search on it, its export fine-tuned."""
    assert StageClock(cascade_stages(2, 2, 2, warmup=1)).networks() == 4
    assert StageClock(cascade_stages(2, 2, 2, intermediate_finetune=0)).networks() == 4
