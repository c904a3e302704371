"""Microcontroller memory of a plain network (SPEC section 9), exact, at batch 1.

- ``flash = sum over Conv/Linear layers (each module once) of ceil(weights * weight_bits / 8)
  + 8 * out_channels`` (int32 bias + float32 per-channel scale after BN folding).
- ``peak_ram = max over operations of sum over the buffers live during it of
  ceil(numel * act_bits / 8)``, buffers and liveness from
  :mod:`lightning_dnas.nas.graph.liveness` on the torch.fx graph (execution order).

:func:`memory_report` adds the parameter and MAC counts of :mod:`.models`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from torch import fx, nn

from ..graph.liveness import Liveness, at_batch_one, liveness, sample_shapes
from ..graph.trace import as_tuple, trace
from .models import LayerShape, layer_macs, layer_params

CONV_LINEAR = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def act_bytes(numel: float, bits: int) -> int:
    """Bytes of a buffer of ``numel`` elements at ``bits`` per element: ``ceil(n*bits/8)``."""
    return math.ceil(numel * bits / 8 - 1e-9)


def layer_flash_bytes(weights: float, out_channels: float, bits: int) -> float:
    """``ceil(weights * bits / 8) + 8 * out_channels`` (exact for numbers; without the
    ceil, which has no gradient, for tensors)."""
    if isinstance(weights, (int, float)):
        return act_bytes(weights, bits) + 8 * out_channels
    return weights * (bits / 8) + 8 * out_channels


@dataclass(frozen=True)
class Peak:
    """Peak activation RAM in bytes and the operation holding it (first to reach it):
    ``op`` is the fx node name, ``target`` the module path or function name."""

    bytes: int
    op: str | None
    target: str | None


@dataclass(frozen=True)
class MemoryReport:
    """Costs of a plain network at batch 1: conv+linear ``params`` (with bias), ``macs``
    (with bias), ``flash`` bytes, ``peak_ram`` bytes and the operation holding the peak."""

    params: int
    macs: int
    flash: int
    peak_ram: int
    peak_op: str | None
    peak_target: str | None


def _analyse(net: nn.Module, example_input: Any) -> tuple[fx.GraphModule, dict]:
    gm = trace(net)
    return gm, sample_shapes(gm, at_batch_one(as_tuple(example_input)))


def target_name(node: fx.Node) -> str:
    """A readable name of what a node runs (module path, function or method name)."""
    if node.op == "call_module":
        return str(node.target)
    return getattr(node.target, "__name__", str(node.target))


def peak_of(live: Liveness, act_bits: int = 8) -> Peak:
    """The peak of a liveness table with every buffer at its traced size."""
    value, step = live.peak(lambda b: act_bytes(live.buffers[b].numel, act_bits))
    if step is None:
        return Peak(int(value), None, None)
    return Peak(int(value), step.node.name, target_name(step.node))


def peak_ram(net: nn.Module, example_input: Any, act_bits: int = 8) -> Peak:
    """Peak activation RAM of ``net`` at batch 1 (the first sample of ``example_input``),
    in bytes, by the SPEC 9 rules on its torch.fx graph."""
    gm, shapes = _analyse(net, example_input)
    return peak_of(liveness(gm, shapes), act_bits)


def flash(net: nn.Module, weight_bits: int = 8) -> int:
    """Flash bytes of ``net``'s Conv/Linear modules (each module once; BN folded, free):
    every such module, called or not; :func:`memory_report` counts only the layers the
    forward calls (a module the forward never uses is not deployed)."""
    total = 0
    for m in net.modules():
        if isinstance(m, CONV_LINEAR):
            out = m.out_features if isinstance(m, nn.Linear) else m.out_channels
            total += int(layer_flash_bytes(m.weight.numel(), out, weight_bits))
    return total


def memory_report(
    net: nn.Module, example_input: Any, act_bits: int = 8, weight_bits: int = 8
) -> MemoryReport:
    """Params, MACs (both per SPEC 4, with bias), flash and peak RAM (SPEC 9) of a plain
    network, and which operation holds the peak. MACs count every call of a layer at the
    output positions of batch 1; params and flash count a module once."""
    gm, shapes = _analyse(net, example_input)
    params = macs = flash_bytes = 0
    seen: set[int] = set()
    for node in gm.graph.nodes:
        if node.op != "call_module":
            continue
        mod = gm.get_submodule(str(node.target))
        if not isinstance(mod, CONV_LINEAR) or not isinstance(shapes.get(node), tuple):
            continue
        linear = isinstance(mod, nn.Linear)
        cout = mod.out_features if linear else mod.out_channels
        cin = mod.in_features if linear else mod.in_channels
        groups = 1 if linear else mod.groups
        depthwise = groups > 1 and groups == cin == cout
        shape = LayerShape(
            name=str(node.target), module=mod, kind="depthwise" if depthwise else "conv",
            in_channels=cin, out_channels=cout, groups=groups,
            kernel=1 if linear else math.prod(mod.kernel_size), bias=mod.bias is not None,
            positions=math.prod(shapes[node]) // cout,
        )  # fmt: skip
        macs += int(layer_macs(shape))
        if id(mod) not in seen:
            seen.add(id(mod))
            params += int(layer_params(shape))
            flash_bytes += int(layer_flash_bytes(mod.weight.numel(), cout, weight_bits))
    peak = peak_of(liveness(gm, shapes), act_bits)
    return MemoryReport(params, macs, flash_bytes, peak.bytes, peak.op, peak.target)
