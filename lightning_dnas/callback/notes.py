"""What the callback tells the user, worded in one place: the line printed at each stage
start and each export (what the search removed), and the warnings of a search that did
nothing (a network without a searchable layer, an export that removed nothing and the
likely cause with the knob to turn), of an unlogged monitor.

Plain functions from values to strings (no Lightning, no printing), so each message is
tested for what it says (tests/callback/test_notes.py) and the hooks stay one line each.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..stages import Stage

# Masks start at 1.0 and are removed below 0.5; an Adam step moves a mask by about the
# learning rate whatever the gradient's size, so crossing takes about 0.5 / lr steps.
MASK_DISTANCE = 0.5


def stage_starts(stage: Stage, epoch: int) -> str:
    """The line printed when ``stage`` starts at ``epoch``."""
    return f"lightning_dnas: stage {stage.name} ({stage.epochs} epochs) starts at epoch {epoch}"


def recompile_limit_raised(old: int, new: int) -> str:
    """The line printed when a compiled fit's network count needs more dynamo cache
    entries than ``torch._dynamo.config.recompile_limit`` allowed (:mod:`.compiled`)."""
    return (f"lightning_dnas: the compiled module runs {new} networks in this fit (one "
            f"compiled entry each); raised torch._dynamo.config.recompile_limit from {old} "
            f"to {new} so that no step falls back to eager")  # fmt: skip


def monitor_missing(monitor: str, logged: Iterable[str]) -> str:
    """The warning of a search or patience stage whose ``monitor`` is not logged."""
    return (f"DNASCallback: monitor {monitor!r} is not logged (logged: {sorted(logged)}); the "
            "last search state is exported and patience is off")  # fmt: skip


def patience_out(stage: Stage, epoch: int) -> str:
    """The line printed when ``stage``'s patience ends it at ``epoch``."""
    return f"lightning_dnas: {stage.name} ends early at epoch {epoch} (patience {stage.patience})"


def removed(widths: list[dict[str, Any]], choices: Mapping[str, int],
            searchable: Mapping[str, int]) -> dict[str, int]:  # fmt: skip
    """What an export removed: ``channels`` (output channels, summed over the layers of
    ``widths``, :meth:`~lightning_dnas.nas.engine.DNAS.layer_widths`), ``taps`` (kernel taps
    likewise), ``candidates`` (``choices``: candidates per choice, all but one removed);
    with ``searchable``'s counts of what could be (``channel_masks``, ``tap_masks``,
    ``choices``) as ``searchable_*``."""
    out = {"channels": sum(r["original"] - r["out_channels"] for r in widths),
           "taps": sum(r["kernel"] - r["taps"] for r in widths),
           "candidates": sum(n - 1 for n in choices.values())}  # fmt: skip
    out.update({f"searchable_{k}": int(v) for k, v in searchable.items()})
    return out


def export_summary(record: Mapping[str, Any]) -> str:
    """The line printed at an export: its costs and what it removed."""
    costs = ", ".join(f"{n} {v:,.0f}" for n, v in record["costs"].items())
    r = record.get("removed")
    if r is None:
        return f"lightning_dnas: exported after {record['stage']}: {costs}"
    best = record.get("best_epoch")
    at = "" if best is None else f" (best epoch {best})"
    return (f"lightning_dnas: exported after {record['stage']}{at}: {costs}; removed "
            f"{r['channels']} channels, {r['taps']} kernel taps, {r['candidates']} "
            "candidates")  # fmt: skip


def nothing_searchable(network: str, method: str) -> str:
    """The warning of a converted network without a searchable channel group, tap mask or
    choice: the search cannot change it."""
    return (f"DNASCallback: `{network}` has nothing {method} can search (no channel group "
            "between two searchable layers, no Conv1d taps, no SuperNetModule): its cost "
            "stays fixed and the export equals the seed. Common causes: the network is one "
            "layer (its input and output widths are fixed), its layers are excluded, or the "
            "converter froze them (its warnings name the nodes)")  # fmt: skip


def nothing_removed(record: Mapping[str, Any], steps: int | None, lr: float | None,
                    reg: float | None) -> str | None:
    """The warning of an export of a searchable network that removed nothing, naming the
    likely cause and its knob, or ``None`` when something was removed (or nothing could
    be). ``steps``: architecture steps the search took (``None``: unknown), ``lr`` the
    architecture learning rate, ``reg``: the last ``lambda * soft cost``."""
    r = record.get("removed")
    if r is None or r["channels"] or r["taps"] or r["candidates"]:
        return None
    if not (r.get("searchable_channel_masks") or r.get("searchable_tap_masks")):
        return None  # nothing_searchable already said so at the conversion
    head = f"DNASCallback: the search {record['stage']} removed nothing"
    if steps is not None and lr is not None and steps * lr < MASK_DISTANCE:
        need = MASK_DISTANCE / lr
        return (f"{head}: it took {steps} architecture steps at arch_lr={lr:g}; masks start "
                f"at 1.0 and an Adam step moves one by about arch_lr, so crossing 0.5 takes "
                f"about {need:,.0f} steps: raise arch_lr (e.g. {MASK_DISTANCE / steps:.2g}) "
                "or search_epochs")  # fmt: skip
    cost = next(iter(record["costs"].items()), None)
    hint = ""
    if cost is not None and cost[1] > 0:
        hint = (f"; lambda * {cost[0]} near the task loss (about 1) is strength "
                f"~{1.0 / cost[1]:.1g} for a {cost[0]} of {cost[1]:,.0f}")  # fmt: skip
    said = "" if reg is None else f" (lambda * cost was {reg:.3g} at the last step)"
    return (f"{head}{said}: the cost's pull on the masks lost to the task loss's; raise "
            f"strength{hint}")  # fmt: skip


__all__ = [
    "MASK_DISTANCE",
    "export_summary",
    "monitor_missing",
    "nothing_removed",
    "nothing_searchable",
    "patience_out",
    "removed",
    "stage_starts",
]
