"""Cost models: functions of a layer's *effective* hyper-parameters (SPEC section 4).

A cost model is evaluated twice: softly, with channel counts ``sum(theta)`` and soft
kernel sizes as differentiable tensors, and hard, with the binarized counts (exactly the
exported network's). The same function serves both; it receives a :class:`LayerShape`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

Number = Tensor | float | int


@dataclass(frozen=True)
class LayerShape:
    """Effective hyper-parameters of one Conv/Linear layer (one call of it).

    ``in_channels``/``out_channels``/``kernel`` are tensors (soft: differentiable, hard:
    integral values) or ints; ``kernel`` is the number of kernel taps (``prod(k)``, the
    effective count for a searched Conv1d, 1 for Linear); ``positions`` the output positions
    per sample (``H*W`` for Conv2d); ``kind`` is ``"conv"``, ``"depthwise"`` or ``"linear"``.
    For ``"depthwise"``, ``in_channels == out_channels`` (the channels it filters). A
    searched grouped conv (groups > 1, as many outputs as inputs) is a ``"conv"`` whose
    ``groups`` is the effective number of groups kept (``channels / group width``).
    """

    name: str
    module: nn.Module
    kind: str
    in_channels: Number
    out_channels: Number
    kernel: Number
    groups: Number
    bias: bool
    positions: int


CostFn = Callable[[LayerShape], Number]


def layer_params(s: LayerShape) -> Number:
    """Weights + bias: conv ``cout*(cin/groups*k + bias)``, depthwise ``c*(k + bias)``,
    linear ``cout*(cin + bias)``."""
    b = 1 if s.bias else 0
    if s.kind == "depthwise":
        return s.out_channels * (s.kernel + b)
    return s.out_channels * (s.in_channels / s.groups * s.kernel + b)


def layer_macs(s: LayerShape) -> Number:
    """Multiply-accumulates per sample including bias: ``params * output positions``
    (PLiNIO's ``ops``)."""
    return layer_params(s) * s.positions


def layer_macs_no_bias(s: LayerShape) -> Number:
    """Multiply-accumulates per sample without the bias term."""
    if s.kind == "depthwise":
        return s.out_channels * s.kernel * s.positions
    return s.out_channels * s.in_channels / s.groups * s.kernel * s.positions


class CostModel:
    """A named cost: a function of :class:`LayerShape`, or a mapping from layer kind
    (``"conv"``, ``"depthwise"``, ``"linear"``) or module type to such functions.

    ``per_call``: False counts a layer used twice (shared weights) once, as for a parameter
    count; True counts every call, as for MACs or latency. A kind/type absent from the
    mapping costs 0. Example, a latency look-up table for 3x3 convs indexed by channels::

        CostModel({"conv": lambda s: lut[int(s.out_channels)]}, per_call=True)

    (a table look-up is not differentiable; interpolate between entries when the soft cost
    must carry a gradient).
    """

    def __init__(
        self,
        fn: CostFn | Mapping[str | type, CostFn],
        per_call: bool = True,
        name: str = "cost",
    ) -> None:
        if not callable(fn) and not isinstance(fn, Mapping):
            raise TypeError(
                f"a cost model needs a function of LayerShape or a mapping of them, got {fn!r}"
            )
        self.fn = fn
        self.per_call = per_call
        self.name = name

    def __call__(self, s: LayerShape) -> Number:
        if callable(self.fn):
            return self.fn(s)
        for key, fn in self.fn.items():
            if (isinstance(key, str) and key == s.kind) or (
                isinstance(key, type) and isinstance(s.module, key)
            ):
                return fn(s)
        return 0.0

    def __repr__(self) -> str:
        return f"CostModel(name={self.name!r}, per_call={self.per_call})"


def layer_weights(s: LayerShape) -> Number:
    """Weights without bias: conv ``cout*cin/groups*k``, depthwise ``c*k``, linear
    ``cout*cin``."""
    if s.kind == "depthwise":
        return s.out_channels * s.kernel
    return s.out_channels * s.in_channels / s.groups * s.kernel


class _FlashBytes:
    """Per-layer flash bytes at ``bits`` per weight (a class, not a closure: picklable)."""

    def __init__(self, bits: int) -> None:
        self.bits = bits

    def __call__(self, s: LayerShape) -> Number:
        w = layer_weights(s)
        if isinstance(w, Tensor):  # soft: the ceil has no gradient
            return w * (self.bits / 8) + 8 * s.out_channels
        return math.ceil(w * self.bits / 8 - 1e-9) + 8 * s.out_channels


class FlashCost(CostModel):
    """Flash bytes (SPEC 9): per Conv/Linear layer, counted once,
    ``ceil(weights * weight_bits / 8) + 8 * out_channels`` (an int32 bias and a float32
    per-channel scale per output channel after BN folding). The soft value drops the
    ceil (no gradient); the hard value is exact."""

    def __init__(self, weight_bits: int = 8, name: str = "flash") -> None:
        self.weight_bits = weight_bits
        super().__init__(_FlashBytes(weight_bits), per_call=False, name=name)


def _network_level(s: LayerShape) -> Number:
    return 0.0


class PeakRamCost(CostModel):
    """Peak activation RAM in bytes (SPEC 9) at ``act_bits`` per element: a network-level
    cost, ``max over operations of sum over live buffers of ceil(numel * act_bits / 8)``
    on the exported network at batch 1; evaluated by :mod:`lightning_dnas.nas.memory_costs`
    (per layer it is 0)."""

    def __init__(self, act_bits: int = 8, name: str = "peak_ram") -> None:
        self.act_bits = act_bits
        super().__init__(_network_level, per_call=True, name=name)


PARAMS = CostModel(layer_params, per_call=False, name="params")
MACS = CostModel(layer_macs, per_call=True, name="macs")
MACS_NO_BIAS = CostModel(layer_macs_no_bias, per_call=True, name="macs_no_bias")
FLASH = FlashCost()
PEAK_RAM = PeakRamCost()
BUILTIN: dict[str, CostModel] = {c.name: c for c in (PARAMS, MACS, MACS_NO_BIAS, FLASH, PEAK_RAM)}


def resolve_costs(cost: Any) -> dict[str, CostModel]:
    """Normalise the ``cost=`` argument: a built-in name (``"params"``, ``"macs"``,
    ``"macs_no_bias"``, ``"flash"``, ``"peak_ram"``), a :class:`CostModel`, a callable,
    or a ``{name: any of these}`` dict.
    """
    if isinstance(cost, Mapping) and not isinstance(cost, CostModel):
        if not cost:
            raise ValueError("cost={} names no cost; give at least one, e.g. cost='params'")
        return {str(k): _one_cost(v, str(k)) for k, v in cost.items()}
    model = _one_cost(cost, None)
    return {model.name: model}


def _one_cost(cost: Any, name: str | None) -> CostModel:
    if isinstance(cost, str):
        if cost not in BUILTIN:
            raise ValueError(
                f"unknown cost {cost!r}; built-in costs are {sorted(BUILTIN)}, or pass a "
                "CostModel / a function of LayerShape"
            )
        model = BUILTIN[cost]
    elif isinstance(cost, CostModel):
        model = cost
    elif callable(cost):
        model = CostModel(cost, per_call=True, name=name or "cost")
    else:
        raise TypeError(
            f"cost must be a name in {sorted(BUILTIN)}, a CostModel, a callable or a dict of "
            f"them; got {type(cost).__name__}"
        )
    if name is not None and model.name != name:
        if isinstance(model, PeakRamCost):
            return PeakRamCost(model.act_bits, name=name)
        if isinstance(model, FlashCost):
            return FlashCost(model.weight_bits, name=name)
        model = CostModel(model.fn, per_call=model.per_call, name=name)
    return model


def as_tensor(value: Number, like: Tensor) -> Tensor:
    """A cost term as a tensor on ``like``'s device (user functions may return floats)."""
    if isinstance(value, Tensor):
        return value
    return torch.tensor(float(value), device=like.device, dtype=like.dtype)
