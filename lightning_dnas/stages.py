"""The stages of a DNAS fit: warmup -> search -> (export) -> fine-tune, and cascades.

A stage list is plain data (so that Hydra configs can write it)::

    [Stage("warmup", 5), Stage("search", 20, method="pit", patience=5), Stage("finetune", 10)]

The callback runs them in order inside one ``Trainer.fit``. Between stages it converts the
network (before a warmup or search stage, when the network is not already converted for
that stage's method) and exports it (when a search stage is followed by anything but a
search of the same method). The cascade of the thesis is SuperNet search -> export ->
fine-tune -> PIT search -> export -> fine-tune, see :func:`cascade_stages`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from .nas.methods import METHODS
from .quantize.qat import SUPPORTED as QUANTIZE

KINDS = ("warmup", "search", "finetune")
# Stage-list recipes with more than one method (the application's ``method=cascade``).
RECIPES = ("cascade",)
ARCH_PARAMS = ("logits", "masks")


@dataclass(frozen=True)
class Stage:
    """One stage of a DNAS fit.

    Args:
        kind: ``"warmup"`` (weights only, architecture frozen, on the converted network),
            ``"search"`` (weights and architecture, regulariser on) or ``"finetune"``
            (weights only, on the exported plain network, fresh optimizers).
        epochs: the stage's length (it may end earlier on ``patience``).
        method: for warmup and search: ``"pit"``, ``"supernet"`` or ``"pitsupernet"``. A
            warmup without a method takes that of the search that follows it.
        train: the architecture parameters a search trains: ``"logits"`` (SuperNet choices)
            and/or ``"masks"`` (PIT channel and tap masks); the others stay frozen.
        strength: lambda for this search (a number for the first cost or ``{cost: lambda}``);
            ``None`` takes the callback's.
        patience: end the stage after this many validations without improvement of its
            score (search: validation task loss + lambda * cost; others: the monitored
            metric); ``None`` runs all its epochs.
        quantize: for the last stage, a fine-tune: ``"int8"`` makes it quantisation-aware
            (fake-quantised weights and activations, BN folded, :mod:`lightning_dnas.quantize`)
            and the fit ends with the int8 network; ``None``: float.
    """

    kind: str
    epochs: int
    method: str | None = None
    train: tuple[str, ...] = ARCH_PARAMS
    strength: float | Mapping[str, float] | None = None
    patience: int | None = None
    name: str = field(default="", compare=False)
    quantize: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The stage as JSON-able data (``Stage(**d)`` rebuilds it)."""
        out = asdict(self)
        out["train"] = list(self.train)
        out["strength"] = dict(self.strength) if isinstance(self.strength, Mapping) else (
            self.strength)  # fmt: skip
        return out


def parse_stages(stages: Iterable[Stage | Mapping[str, Any]]) -> list[Stage]:
    """Check a stage list and fill in what follows from it (warmup methods, names).

    Raises:
        ValueError: naming the stage and the valid choices, for an unknown kind, method or
            architecture-parameter name, a non-positive epoch count, a warmup not followed by
            a search of its method, a fine-tune before any search, or no search at all.
    """
    out: list[Stage] = []
    for i, raw in enumerate(stages):
        stage = raw if isinstance(raw, Stage) else _from_mapping(i, raw)
        where = f"stage {i} ({stage.kind})"
        if stage.kind not in KINDS:
            raise ValueError(f"stage {i}: unknown kind {stage.kind!r}; valid kinds: {list(KINDS)}")
        if not isinstance(stage.epochs, int) or stage.epochs < 1:
            raise ValueError(f"{where}: epochs must be a positive integer, got {stage.epochs!r}")
        if stage.method is not None and stage.method not in METHODS:
            raise ValueError(f"{where}: unknown method {stage.method!r}; valid: {list(METHODS)}")
        if stage.kind == "finetune" and stage.method is not None:
            raise ValueError(f"{where}: a fine-tune stage has no method (it trains the "
                             "exported plain network)")  # fmt: skip
        bad = set(stage.train) - set(ARCH_PARAMS)
        if bad:
            raise ValueError(f"{where}: unknown architecture parameters {sorted(bad)} in train; "
                             f"valid: {list(ARCH_PARAMS)}")  # fmt: skip
        if stage.patience is not None and stage.patience < 1:
            raise ValueError(f"{where}: patience must be a positive integer or None")
        if stage.quantize is not None and stage.quantize not in QUANTIZE:
            raise ValueError(f"{where}: quantize={stage.quantize!r} is not supported; "
                             f"supported: {list(QUANTIZE)} (or None)")  # fmt: skip
        if stage.quantize is not None and stage.kind != "finetune":
            raise ValueError(f"{where}: only a fine-tune stage can be quantisation-aware")
        out.append(stage)
    # A QAT network is no search's seed (its layers are fused, fake-quantised modules):
    # the quantisation-aware fine-tune ends the fit.
    for i, stage in enumerate(out[:-1]):
        if stage.quantize is not None:
            raise ValueError(f"stage {i} (finetune): a quantize={stage.quantize!r} fine-tune "
                             "must be the last stage")  # fmt: skip
    if not any(s.kind == "search" for s in out):
        raise ValueError("the stage list has no search stage; a DNAS fit needs at least one "
                         "Stage('search', epochs, method=...) with a method in "
                         f"{list(METHODS)}")  # fmt: skip
    return [_complete(i, s, out) for i, s in enumerate(out)]


def _from_mapping(i: int, raw: Mapping[str, Any]) -> Stage:
    allowed = set(Stage.__dataclass_fields__)
    unknown = set(raw) - allowed
    if unknown:
        raise ValueError(f"stage {i}: unknown keys {sorted(unknown)}; valid keys: "
                         f"{sorted(allowed)}")  # fmt: skip
    if "kind" not in raw or "epochs" not in raw:
        raise ValueError(f"stage {i}: needs 'kind' and 'epochs', got {dict(raw)}")
    data = dict(raw)
    if "train" in data:
        data["train"] = tuple(data["train"])
    if isinstance(data.get("strength"), Mapping):
        data["strength"] = dict(data["strength"])
    return Stage(**data)


def _complete(i: int, stage: Stage, stages: Sequence[Stage]) -> Stage:
    where = f"stage {i} ({stage.kind})"
    method = stage.method
    if stage.kind == "warmup":
        nxt = stages[i + 1] if i + 1 < len(stages) else None
        if nxt is None or nxt.kind != "search":
            raise ValueError(f"{where}: a warmup must be followed by a search stage")
        if method is not None and method != nxt.method:
            raise ValueError(f"{where}: warms up {method!r} but the next search is "
                             f"{nxt.method!r}")  # fmt: skip
        method = nxt.method
    if stage.kind == "search" and method is None:
        raise ValueError(f"{where}: a search stage needs a method; valid: {list(METHODS)}")
    if stage.kind == "finetune" and not any(s.kind == "search" for s in stages[:i]):
        raise ValueError(f"{where}: a fine-tune stage must come after a search stage")
    name = stage.name or f"{i}-{stage.kind}" + (f"-{method}" if method else "") + (
        f"-{stage.quantize}" if stage.quantize else "")  # fmt: skip
    return replace(stage, method=method, train=tuple(stage.train), name=name)


def default_stages(
    method: str, warmup: int = 0, search: int = 10, finetune: int = 10,
    patience: int | None = None, train: Sequence[str] = ARCH_PARAMS,
    quantize: str | None = None,
) -> list[Stage]:  # fmt: skip
    """``warmup -> search -> fine-tune`` for one method (a zero count drops that stage);
    ``train``: the architecture parameters the search trains; ``quantize``: of the
    fine-tune."""
    stages = [Stage("warmup", warmup, method)] if warmup else []
    stages.append(Stage("search", search, method, train=tuple(train), patience=patience))
    if finetune:
        stages.append(Stage("finetune", finetune, quantize=quantize))
    return parse_stages(stages)


def cascade_stages(
    supernet: int = 10, pit: int = 10, finetune: int = 10, warmup: int = 0,
    intermediate_finetune: int = 5, supernet_strength: float | Mapping[str, float] | None = None,
    pit_strength: float | Mapping[str, float] | None = None, patience: int | None = None,
    train: Sequence[str] = ARCH_PARAMS, quantize: str | None = None,
) -> list[Stage]:  # fmt: skip
    """The thesis' cascade: [warmup ->] SuperNet search -> export -> fine-tune -> PIT search ->
    export -> fine-tune. The intermediate fine-tune (on by default, as in the thesis, where
    PIT starts from a fine-tuned SuperNet point) is dropped with ``intermediate_finetune=0``;
    ``train``: the architecture parameters both searches train; ``quantize``: of the last
    fine-tune.
    """
    stages = [Stage("warmup", warmup, "supernet")] if warmup else []
    stages.append(Stage("search", supernet, "supernet", tuple(train), supernet_strength,
                        patience))  # fmt: skip
    if intermediate_finetune:
        stages.append(Stage("finetune", intermediate_finetune))
    stages.append(Stage("search", pit, "pit", tuple(train), pit_strength, patience))
    if finetune:
        stages.append(Stage("finetune", finetune, quantize=quantize))
    return parse_stages(stages)


def split_phases(stages: Sequence[Stage]) -> list[list[Stage]]:
    """Cut a stage list before every search that follows a fine-tune: each part starts from
    a plain network and converts it once, so each can run as a fit of its own (the
    application's phases, cached separately). Each part is parsed again, its stages named
    from 0 as in a fit of its own."""
    parts: list[list[Stage]] = [[]]
    for i, stage in enumerate(stages):
        if stage.kind in ("warmup", "search") and i and stages[i - 1].kind == "finetune":
            parts.append([])
        parts[-1].append(replace(stage, name=""))
    return [parse_stages(part) for part in parts]

