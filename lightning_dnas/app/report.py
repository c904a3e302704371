"""What the application measures and prints: network costs, memory, layer shapes, the
table, the W&B summary."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from lightning_dnas.nas.cost.memory import memory_report
from lightning_dnas.nas.engine import DNAS
from lightning_dnas.nas.methods import PIT

from .results import Point, RunResult

COSTS = {"params": "params", "macs": "macs"}
_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Linear)


def network_costs(net: nn.Module, example: Tensor) -> tuple[int, int]:
    """Conv+linear parameters and per-sample MACs of ``net`` (a search network: of the
    network its export would give). Counted by the engine's cost model, through a PIT
    wrapper of a copy for a plain network (all masks on: the exact counts)."""
    search = net if isinstance(net, DNAS) else PIT(copy.deepcopy(net), example, cost=COSTS)
    was = net.training
    try:
        return int(search.hard_cost("params")), int(search.hard_cost("macs"))
    finally:
        net.train(was)


def with_memory(p: Point, net: nn.Module, example: Tensor) -> Point:
    """``p`` with the flash and peak RAM bytes (int8, batch 1, SPEC section 9) of the plain
    network ``net`` and the operation holding the peak: its module path, else (a function
    such as a residual add) its torch.fx node name (:func:`lightning_dnas.memory_report`)."""
    was = net.training
    try:
        report = memory_report(net, example)
    finally:
        net.train(was)
    where = report.peak_op
    if report.peak_target is not None and report.peak_target in dict(net.named_modules()):
        where = report.peak_target
    return dataclasses.replace(p, flash=report.flash, peak_ram=report.peak_ram, peak_op=where)


def wandb_summary(result: RunResult) -> dict[str, Any]:
    """The W&B run summary of an application run: ``final/`` and ``reference/`` params,
    MACs, flash, peak RAM, the operation holding the peak and the metrics, and
    ``budget/<cost>`` for each budget."""
    summary: dict[str, Any] = {f"budget/{c}": b for c, b in result.budgets.items()}
    for name, pt in (("final", result.final), ("reference", result.reference)):
        items = [("params", pt.params), ("macs", pt.macs), ("flash", pt.flash),
                 ("peak_ram", pt.peak_ram), ("peak_op", pt.peak_op),
                 *((f"test_{k}", v) for k, v in pt.test.items()),
                 *((f"val_{k}", v) for k, v in pt.val.items())]  # fmt: skip
        summary.update({f"{name}/{k}": v for k, v in items if v is not None})
    return summary


def _describe(module: nn.Module) -> str:
    if isinstance(module, nn.Linear):
        return f"{module.in_features}->{module.out_features}"
    kernel = "x".join(str(k) for k in module.kernel_size)
    text = f"{module.in_channels}->{module.out_channels} k{kernel}"
    if any(d > 1 for d in module.dilation):
        text += f" d{'x'.join(str(d) for d in module.dilation)}"
    if module.groups > 1:
        text += f" g{module.groups}"
    return text


def layer_shapes(net: nn.Module) -> dict[str, str]:
    """``{layer name: "cin->cout k<kernel> [d<dilation>] [g<groups>]"}`` of every conv and
    linear (``"in->out"``). An exported conv wrapped with its padding in a Sequential
    (``name.0`` pad, ``name.1`` conv) is listed under ``name``."""
    out: dict[str, str] = {}
    for name, module in net.named_modules():
        if isinstance(module, _LAYERS):
            parent, _, _ = name.rpartition(".")
            holder = net.get_submodule(parent) if parent else None
            wrapped = isinstance(holder, nn.Sequential) and holder[-1] is module and not any(
                isinstance(m, _LAYERS) for m in list(holder)[:-1])
            out[parent if wrapped else name] = _describe(module)
    return out


def format_table(
    reference: Point, found: Point, ref_layers: dict[str, str], found_layers: dict[str, str],
    metric: str, labels: Sequence[str], int8: dict[str, Any] | None = None,
    budgets: Mapping[str, float] | None = None,
) -> str:  # fmt: skip
    """The seed-vs-found table: costs, ``metric`` on the test and validation sets, and one
    row per layer (``removed`` where the found network has no such layer). ``int8``
    (``results.json``'s entry of a quantised run) adds the int8 file's test and validation
    ``metric`` and its flash next to the ``flash`` cost, for the found network. Flash,
    peak RAM and where the peak is come from the points (``-`` when not measured);
    ``budgets`` (``{cost: B}``) add one row each and the found cost against it."""

    def fmt(point: Point, split: str, name: str = metric) -> str:
        value = getattr(point, split).get(name)
        return "-" if value is None else (f"{value:.2%}" if metric == "acc" else f"{value:.4f}")

    fmt_int8 = lambda point, split: fmt(point, split, f"int8_{metric}")  # noqa: E731

    rows: list[tuple[str, str, str]] = [
        ("params (conv+linear)", f"{reference.params:,}", f"{found.params:,}"),
        ("MACs per sample", f"{reference.macs:,}", f"{found.macs:,}"),
        ("flash B (int8 weights)", _count(reference.flash), _count(found.flash)),
        ("peak RAM B (int8 activations)", _count(reference.peak_ram), _count(found.peak_ram)),
        ("peak RAM at", reference.peak_op or "-", found.peak_op or "-"),
        *((f"budget {c}", "-", f"<= {b:,.0f}") for c, b in (budgets or {}).items()),
        (f"test {metric}", fmt(reference, "test"), fmt(found, "test")),
        (f"val {metric}", fmt(reference, "val"), fmt(found, "val")),
    ]
    if int8 is not None:
        rows += [(f"test int8 {metric} (onnxruntime)", "-", fmt_int8(found, "test")),
                 (f"val int8 {metric} (onnxruntime)", "-", fmt_int8(found, "val")),
                 ("int8 ONNX weights+biases B", "-", f"{int8['flash']:,}"),
                 ("flash cost B (SPEC 9)", "-", f"{int8['flash_cost']:,}")]  # fmt: skip
    names = list(ref_layers) + [n for n in found_layers if n not in ref_layers]
    layer_rows = [(f"  {n}", ref_layers.get(n, "-"), found_layers.get(n, "removed"))
                  for n in names]  # fmt: skip
    width = max(len(r[0]) for r in rows + layer_rows)
    col = max(len(r[1]) for r in rows + layer_rows + [("", labels[0], "")])
    line = lambda r: f"{r[0]:{width}}  {r[1]:>{col}}  {r[2]}"  # noqa: E731
    out = [line(("", labels[0], labels[1])), "-" * (width + col + 22)]
    out += [line(r) for r in rows]
    out.append("layers (in->out channels, kernel, dilation, groups)")
    out += [line(r) for r in layer_rows]
    out.append(f"found/seed: params {found.params / max(reference.params, 1):.1%}, "
               f"MACs {found.macs / max(reference.macs, 1):.1%}")  # fmt: skip
    for cost, budget in (budgets or {}).items():
        value = getattr(found, cost)
        if value is not None:
            verdict = "within" if value <= budget else "OVER"
            out.append(f"budget {cost}: found {value:,} of {budget:,.0f} ({value / budget:.1%}, "
                       f"{verdict} budget)")  # fmt: skip
    return "\n".join(out)


def _count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def point(params_macs: tuple[int, int], val: dict[str, float], test: dict[str, float]) -> Point:
    """A :class:`Point` from ``(params, macs)`` and the two metric dicts."""
    return Point(params=params_macs[0], macs=params_macs[1], val=val, test=test)


def point_dict(p: Point) -> dict[str, Any]:
    """JSON form of a :class:`Point` (for cache entries)."""
    return {"params": p.params, "macs": p.macs, "val": p.val, "test": p.test}
