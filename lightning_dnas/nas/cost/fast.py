"""Vectorised soft cost for the built-in costs (params, MACs): a handful of tensor ops per
step instead of several per layer, because the soft cost runs in every training step.

A group's soft count is ``c_r = sum(theta_r) * unit_r`` with ``theta = |alpha| * scale +
offset``, so every layer's effective channel counts are affine in ``|a|``, the
concatenation of all channel-mask alphas: ``cin = P_in |a| + q_in``,
``cout = P_out |a| + q_out``. Per layer ``l`` (``ipg`` = input channels per group:
``cin / groups`` for a dense conv or linear, the group width for a depthwise/grouped one)::

    params_l = cout_l * (ipg_l * k_l + bias_l)        macs_l = params_l * positions_l

so ``cost = dot(cout, u * cin + v)`` with per-layer constants ``u``, ``v`` folding the
kernel, bias, positions (MACs) or first-call flag (params) and, inside candidate ``i`` of a
choice ``m``, the weight ``p_m[i]``. Equal to the per-layer evaluation of :mod:`.models`
(tested), which remains the path for user cost functions.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .models import layer_macs, layer_macs_no_bias, layer_params

FAST_COSTS = {layer_params: "params", layer_macs: "macs", layer_macs_no_bias: "macs_no_bias"}


class LinearCounts(nn.Module):
    """Precomputed affine maps from ``|a|`` to per-layer channel counts, and per-layer cost
    coefficients (buffers follow the module's device and dtype).

    ``masks``: ``(scale, offset, unit)`` per channel mask in the order of ``|a|``;
    ``layers``: per layer call, ``in``/``out`` as ``{mask index: channels per entry}``,
    ``b_in``/``b_out`` frozen channels, ``dense``, ``ipg``, ``groups``, ``k``, ``bias``,
    ``positions``, ``first``, ``owner`` (0 outside choices, else 1 + candidate slot), ``taps``.
    """

    def __init__(self, masks: Sequence[tuple[Tensor, Tensor]], layers: Sequence[dict]) -> None:
        super().__init__()
        sizes = [len(scale) for scale, _ in masks]
        starts = [sum(sizes[:i]) for i in range(len(sizes))]
        n, entries = len(layers), sum(sizes)
        p_in, p_out = torch.zeros(n, entries), torch.zeros(n, entries)
        q_in, q_out = torch.zeros(n), torch.zeros(n)
        for i, layer in enumerate(layers):
            for side, p, q in (("in", p_in, q_in), ("out", p_out, q_out)):
                q[i] = float(layer[f"b_{side}"])
                for r, coef in layer[side].items():
                    scale, offset = masks[r]
                    p[i, starts[r] : starts[r] + sizes[r]] += coef * scale
                    q[i] += coef * float(offset.sum())
        col = {key: torch.tensor([float(layer[key]) for layer in layers]) for key in
               ("dense", "ipg", "groups", "k", "bias", "positions", "first")}  # fmt: skip
        self.taps = [(i, layer["taps"]) for i, layer in enumerate(layers) if layer["taps"]]
        self.register_buffer("p_in", p_in, persistent=False)
        self.register_buffer("p_out", p_out, persistent=False)
        self.register_buffer("q_in", q_in, persistent=False)
        self.register_buffer("q_out", q_out, persistent=False)
        for key, values in col.items():
            self.register_buffer(key, values, persistent=False)
        owner = torch.tensor([int(layer["owner"]) for layer in layers], dtype=torch.long)
        self.register_buffer("owner", owner, persistent=False)
        self._static: dict[tuple, tuple[Tensor, Tensor]] = {}

    def coefficients(self, kind: str) -> tuple[Tensor, Tensor]:
        """``(u, v)`` with ``cost = dot(cout, u * cin + v)`` before the choice weights
        (cached unless soft kernel sizes of Conv1d tap masks enter them)."""
        key = (kind, self.k.device, self.k.dtype)
        if not self.taps and key in self._static:
            return self._static[key]
        k = self.k
        if self.taps:
            index = torch.tensor([i for i, _ in self.taps], device=k.device)
            k = k.index_put((index,), torch.stack([t.soft_taps() for _, t in self.taps]))
        u = self.dense * k / self.groups
        v = (1.0 - self.dense) * self.ipg * k
        if kind != "macs_no_bias":
            v = v + self.bias
        w = self.first if kind == "params" else self.positions
        if not self.taps:
            self._static[key] = (u * w, v * w)
            return self._static[key]
        return u * w, v * w

    def cost(self, abs_alpha: Tensor, kind: str, weights: Tensor | None) -> Tensor:
        """Soft ``kind`` cost (a value of :data:`FAST_COSTS`); ``weights[owner]`` scales each
        layer (``weights[0] = 1`` outside choices, ``p_m[i]`` inside)."""
        cin = torch.addmv(self.q_in, self.p_in, abs_alpha)
        cout = torch.addmv(self.q_out, self.p_out, abs_alpha)
        u, v = self.coefficients(kind)
        if weights is not None:
            w = weights[self.owner]
            u, v = u * w, v * w
        return torch.dot(cout, torch.addcmul(v, u, cin))
