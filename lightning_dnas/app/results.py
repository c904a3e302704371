"""The ``results.json`` one run writes, and the reader the Pareto tool uses.

Format ``"lightning_dnas.results/1"`` (a JSON object; every key is required, ``null`` only
where noted)::

    {"format": "lightning_dnas.results/1",
     "method": "pit" | "supernet" | "pitsupernet" | "cascade" | "seed",
     "task": "classification" | "anomaly",
     "data": "mnist1d", "model": "dilated_cnn",
     "lambdas": {"supernet": {"params": 3e-06}, "pit": {"params": 1e-06}},  # stage->cost->strength
     "icv": 0.0,                      # ICV regulariser strength (0 = off)
     "softmax": "hard_gumbel",
     "seed": 0,                       # full-pipeline seed
     "finetune_seed": 1,              # int, or null when the run has no fine-tune stage
     "search_id": "3f2a9c1b7d4e",     # same for runs that differ only in finetune_seed
     "stages": [{"name": "supernet.search", "kind": "warmup" | "search" | "export" | "finetune",
                 "epochs": 20, "params": 1234, "macs": 56789,
                 "val": {"acc": 0.91, "loss": 0.3}, "test": {"acc": 0.9, "loss": 0.31}}, ...],
     "final": {"params": 1234, "macs": 56789, "val": {...}, "test": {...},
               "flash": 2345, "peak_ram": 640, "peak_op": "blocks.2.pad"},  # optional keys
     "reference": {"params": 9999, "macs": 99999, "val": {...}, "test": {...},  # seed model
                   "flash": 29360, "peak_ram": 3072, "peak_op": "blocks.2.pad"},
     "budgets": {"params": 5000.0},   # optional key: only in a run with budget.<cost>
     "arch": {...arch spec...} | "path/to/arch.json" | null,   # null for method "seed"
     "wall_s": 123.4,
     "int8": null | {"onnx": "export/model_int8.onnx", "flash": 28808,  # optional key
              "qparam_bytes": 1794, "flash_cost": 29360, "float_layers": []}}

``int8`` (only in a ``quantize=int8`` run's file; absent, as in files written before it
existed, reads as null): the QDQ file, its weight and bias initializers' bytes, their
scales' and zero points' bytes, SPEC section 9's ``flash`` cost of the network and the
layers kept in float; such a run's ``final.val``/``final.test`` also hold ``int8_acc``
(onnxruntime's accuracy of the file) and ``int8_agreement`` (share of samples where it
gives the fake-quantised PyTorch network's class), next to ``acc`` (the fake-quantised
network's).

``flash``, ``peak_ram`` (bytes at int8, SPEC section 9, :func:`lightning_dnas.memory_report`)
and ``peak_op`` (the operation holding the peak: the module path, else the torch.fx node)
of ``final`` and ``reference``, and ``budgets`` (``budget.<cost>`` of the run, binding its
last search phase) are absent in files written before they existed: read as ``null``
(the Pareto tool skips such runs for ``--cost peak_ram|flash``) and ``{}``; a run without a
budget writes no ``budgets``.

Metrics are flat ``{name: number}`` dicts: ``{"acc", "loss"}`` for classification,
``{"auc", "mse"}`` for anomaly detection; params and MACs are integers (per-sample MACs).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from lightning_dnas.nas.methods import METHODS as SEARCH_METHODS
from lightning_dnas.stages import RECIPES

FORMAT = "lightning_dnas.results/1"
# The run kinds a results file may name: every search method, every recipe, the seed.
METHODS = (*SEARCH_METHODS, *RECIPES, "seed")
TASKS = ("classification", "anomaly")
STAGE_KINDS = ("warmup", "search", "export", "finetune")

Metrics = dict[str, float]
MEMORY_KEYS = ("flash", "peak_ram", "peak_op")  # optional keys of a Point


class ResultsError(ValueError):
    """A ``results.json`` that cannot be read: the message names the file and the key."""


@dataclass(frozen=True)
class Point:
    """Cost and metrics of one network: ``params``/``macs`` integers, ``val``/``test``
    metric dicts such as ``{"acc": 0.91, "loss": 0.3}``; ``flash``/``peak_ram`` bytes and
    ``peak_op`` where the peak is (``None``: not measured, e.g. an older file)."""

    params: int
    macs: int
    val: Metrics
    test: Metrics
    flash: int | None = None
    peak_ram: int | None = None
    peak_op: str | None = None


@dataclass(frozen=True)
class StageRecord:
    """One stage of a run (``kind`` in :data:`STAGE_KINDS`) and the network it ended with."""

    name: str
    kind: str
    epochs: int
    params: int
    macs: int
    val: Metrics
    test: Metrics


@dataclass(frozen=True)
class RunResult:
    """Everything one run reports; see the module docstring for the JSON layout."""

    method: str
    task: str
    data: str
    model: str
    lambdas: dict[str, dict[str, float]]
    icv: float
    softmax: str
    seed: int
    finetune_seed: int | None
    search_id: str
    stages: list[StageRecord]
    final: Point
    reference: Point
    arch: dict[str, Any] | str | None
    wall_s: float
    int8: dict[str, Any] | None = None
    budgets: dict[str, float] = dataclasses.field(default_factory=dict)
    format: str = FORMAT

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able dict, ``format`` first."""
        data = dataclasses.asdict(self)
        if data["int8"] is None:  # a float run's file keeps the layout it had before int8
            del data["int8"]
        # Likewise the later optional keys: written only when there is something to say.
        if not data["budgets"]:
            del data["budgets"]
        for name in ("final", "reference"):
            for key in MEMORY_KEYS:
                if data[name][key] is None:
                    del data[name][key]
        return {"format": data.pop("format"), **data}

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write ``path`` atomically: a temp file in the same directory, then ``os.replace``,
        so a crash mid-write leaves the previous file (or none), never half a file."""
        path = Path(path)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(self.to_dict(), f, indent=2)
                f.write("\n")
                f.flush()
                # Without fsync a power loss after the rename can still leave an empty file.
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> RunResult:
        """Read and validate ``path``; raises :class:`ResultsError` naming the file and the
        missing or malformed key (e.g. ``final.test``)."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ResultsError(f"{path}: cannot read: {err}") from err
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: Any, source: str = "<dict>") -> RunResult:
        """Validate a parsed ``results.json`` object; ``source`` names it in errors."""
        r = _Reader(source)
        r.require(data, dict, "")
        if r.get(data, "format", str) != FORMAT:
            r.fail(f"format {data['format']!r}, expected {FORMAT!r}")
        stages = r.get(data, "stages", list)
        return cls(
            method=r.choice(data, "method", METHODS),
            task=r.choice(data, "task", TASKS),
            data=r.get(data, "data", str),
            model=r.get(data, "model", str),
            lambdas=r.lambdas(data),
            icv=float(r.get(data, "icv", float)),
            softmax=r.get(data, "softmax", str),
            seed=r.get(data, "seed", int),
            finetune_seed=r.get(data, "finetune_seed", int, nullable=True),
            search_id=r.get(data, "search_id", str),
            stages=[r.stage(s, f"stages[{i}]") for i, s in enumerate(stages)],
            final=r.point(r.get(data, "final", dict), "final"),
            reference=r.point(r.get(data, "reference", dict), "reference"),
            arch=r.get(data, "arch", (dict, str), nullable=True),
            wall_s=float(r.get(data, "wall_s", float)),
            int8=r.get(data, "int8", dict, nullable=True) if "int8" in data else None,
            budgets=r.budgets(data),
        )


def make_search_id(config: Any) -> str:
    """A stable 12-hex-digit id of JSON-able ``config`` (key order does not matter).

    Hash everything that defines the search and nothing of the fine-tune, e.g.
    ``{"method", "data", "model", "lambdas", "icv", "softmax", "seed", "arch": spec}``: runs
    that differ only in ``finetune_seed`` then share the id, other full-pipeline seeds do not
    (even when two seeds happen to find the same architecture)."""
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


_TYPE_NAMES = {
    dict: "an object",
    list: "a list",
    str: "a string",
    int: "an integer",
    float: "a number",
}


class _Reader:
    """Typed access into parsed JSON that raises :class:`ResultsError` with a key path."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, message: str) -> NoReturn:
        raise ResultsError(f"{self.source}: {message}")

    def require(self, value: Any, kinds: type | tuple[type, ...], where: str) -> None:
        kinds = kinds if isinstance(kinds, tuple) else (kinds,)
        # JSON has one number type: an int is a valid float, but a bool is neither.
        accepted = kinds + ((int,) if float in kinds else ())
        if isinstance(value, bool) or not isinstance(value, accepted):
            names = " or ".join(_TYPE_NAMES[k] for k in kinds)
            self.fail(f"`{where or 'top level'}` must be {names}, got {value!r:.60}")

    def get(
        self,
        obj: dict,
        key: str,
        kinds: type | tuple[type, ...],
        where: str = "",
        nullable: bool = False,
    ) -> Any:
        path = f"{where}.{key}" if where else key
        if key not in obj:
            self.fail(f"missing key `{path}`")
        value = obj[key]
        if not (nullable and value is None):
            self.require(value, kinds, path)
        return value

    def choice(self, obj: dict, key: str, options: tuple[str, ...]) -> str:
        value = self.get(obj, key, str)
        if value not in options:
            self.fail(f"`{key}` is {value!r}, expected one of {', '.join(options)}")
        return value

    def metrics(self, obj: dict, key: str, where: str) -> Metrics:
        values = self.get(obj, key, dict, where)
        for name, value in values.items():
            self.require(value, float, f"{where}.{key}.{name}")
        return {name: float(value) for name, value in values.items()}

    def lambdas(self, obj: dict) -> dict[str, dict[str, float]]:
        stages = self.get(obj, "lambdas", dict)
        for stage, costs in stages.items():
            self.require(costs, dict, f"lambdas.{stage}")
            for cost, strength in costs.items():
                self.require(strength, float, f"lambdas.{stage}.{cost}")
        return {s: {c: float(v) for c, v in costs.items()} for s, costs in stages.items()}

    def optional(self, obj: dict, key: str, kinds: type, where: str) -> Any:
        """A key added to the format later: ``None`` when absent (an older file)."""
        return self.get(obj, key, kinds, where, nullable=True) if key in obj else None

    def budgets(self, obj: dict) -> dict[str, float]:
        values = self.optional(obj, "budgets", dict, "") or {}
        for cost, value in values.items():
            self.require(value, float, f"budgets.{cost}")
        return {cost: float(value) for cost, value in values.items()}

    def point(self, obj: dict, where: str) -> Point:
        return Point(
            params=self.get(obj, "params", int, where),
            macs=self.get(obj, "macs", int, where),
            val=self.metrics(obj, "val", where),
            test=self.metrics(obj, "test", where),
            flash=self.optional(obj, "flash", int, where),
            peak_ram=self.optional(obj, "peak_ram", int, where),
            peak_op=self.optional(obj, "peak_op", str, where),
        )

    def stage(self, obj: Any, where: str) -> StageRecord:
        self.require(obj, dict, where)
        kind = self.get(obj, "kind", str, where)
        if kind not in STAGE_KINDS:
            self.fail(f"`{where}.kind` is {kind!r}, expected one of {', '.join(STAGE_KINDS)}")
        point = self.point(obj, where)
        return StageRecord(
            name=self.get(obj, "name", str, where),
            kind=kind,
            epochs=self.get(obj, "epochs", int, where),
            params=point.params, macs=point.macs, val=point.val, test=point.test,
        )
