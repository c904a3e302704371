"""Vectorised soft cost for the built-in costs (params, MACs): a handful of tensor ops per
step instead of several per layer, because the soft cost runs in every training step.

Every layer's effective channel counts are affine in the groups' soft counts
``c_r = sum(theta_r) * unit_r``: ``cin = W_in @ c + b_in``, ``cout = W_out @ c + b_out``.
Then, per layer ``l`` (``ipg`` = input channels per group: ``cin / groups`` for a dense conv
or linear, the group width for a depthwise/grouped conv)::

    params_l = cout_l * (ipg_l * k_l + bias_l)        macs_l = params_l * positions_l

summed with weight 1 outside the choices and ``p_m[i]`` inside candidate ``i`` of choice
``m``; params count a layer's first call only. Equal to the per-layer evaluation of
:mod:`.models` (tested), which remains the path for user cost functions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from .models import layer_macs, layer_macs_no_bias, layer_params

Counts = Callable[[], Tensor]


class LinearCounts(nn.Module):
    """Precomputed affine maps from group counts to per-layer costs (buffers follow the
    module's device and dtype)."""

    def __init__(
        self,
        n_groups: int,
        layers: Sequence[dict],
    ) -> None:
        super().__init__()
        n = len(layers)
        w_in, w_out = torch.zeros(n, n_groups), torch.zeros(n, n_groups)
        rows = {"b_in": [], "b_out": [], "dense": [], "ipg": [], "groups": [], "k": [],
                "bias": [], "positions": [], "first": [], "owner": []}  # fmt: skip
        self.taps: list[tuple[int, nn.Module]] = []
        for i, layer in enumerate(layers):
            for r, coef in layer["in"].items():
                w_in[i, r] += coef
            for r, coef in layer["out"].items():
                w_out[i, r] += coef
            for key in rows:
                rows[key].append(float(layer[key]))
            if layer["taps"] is not None:
                self.taps.append((i, layer["taps"]))
        self.register_buffer("w_in", w_in, persistent=False)
        self.register_buffer("w_out", w_out, persistent=False)
        for key, values in rows.items():
            self.register_buffer(key, torch.tensor(values), persistent=False)
        self.register_buffer("owner_index", self.owner.long(), persistent=False)

    def params_per_layer(self, c: Tensor) -> Tensor:
        """``cout * (ipg * k + bias)`` for every layer call, from group counts ``c``."""
        cin = self.w_in @ c + self.b_in
        cout = self.w_out @ c + self.b_out
        ipg = torch.where(self.dense > 0, cin / self.groups, self.ipg)
        k = self.k
        if self.taps:
            index = torch.tensor([i for i, _ in self.taps], device=k.device)
            k = k.index_put((index,), torch.stack([t.soft_taps() for _, t in self.taps]))
        return cout * (ipg * k + self.bias), cout * ipg * k


FAST_COSTS = {layer_params: "params", layer_macs: "macs", layer_macs_no_bias: "macs_no_bias"}


def fast_cost(
    counts: LinearCounts, c: Tensor, weights: Tensor, kind: str
) -> Tensor:
    """Soft ``kind`` cost (a value of :data:`FAST_COSTS`) from group counts ``c`` and
    per-owner weights (``weights[owner]``: 1 outside choices, ``p_m[i]`` inside)."""
    with_bias, no_bias = counts.params_per_layer(c)
    w = weights[counts.owner_index]
    if kind == "params":
        return (with_bias * w * counts.first).sum()
    if kind == "macs":
        return (with_bias * w * counts.positions).sum()
    return (no_bias * w * counts.positions).sum()
