"""Measuring a search state for the budget controller: the fast hard cost of the built-in
costs (every step) and the floor of the search space (once, in setup)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor

from ..engine import DNAS
from ..pit.masks import THRESHOLD


def fast_hard_cost(search: DNAS, kind: str, expected: bool = True) -> Tensor:
    """Hard cost of a built-in ``kind`` in a few tensor ops (the per-step measurement).

    The vectorised soft cost of :mod:`.cost.fast` evaluated at binarized channel counts
    (``theta > 0.5``) and kept tap counts: ``cost = dot(cout, u*cin + v)`` with
    ``u = dense*k/groups``, ``v = (1-dense)*ipg*k + bias`` times ``first`` (params) or
    ``positions`` (MACs). Choices weigh their candidates by ``p`` (``expected``) or by the
    argmax one-hot; the latter equals :meth:`DNAS.hard_cost` exactly (tested).
    """
    fast = search._fast
    masks = list(search._group_masks.values())
    ref = fast.k
    if masks:
        theta = torch.cat([m.theta() for m in masks]).detach().to(ref.dtype)
        kept = (theta > THRESHOLD).to(ref.dtype)
    else:
        kept = ref.new_zeros(0)
    cin = torch.addmv(fast.q_in, fast.p_in, kept)
    cout = torch.addmv(fast.q_out, fast.p_out, kept)
    k = fast.k
    if fast.taps:
        index = torch.tensor([i for i, _ in fast.taps], device=k.device)
        counts = torch.stack([((t.theta_beta() > THRESHOLD) & (t.theta_gamma() > THRESHOLD))
                              .sum() for _, t in fast.taps]).to(k.dtype)  # fmt: skip
        k = k.index_put((index,), counts)
    u = fast.dense * k / fast.groups
    v = (1.0 - fast.dense) * fast.ipg * k
    if kind != "macs_no_bias":
        v = v + fast.bias
    w = fast.first if kind == "params" else fast.positions
    u, v = u * w, v * w
    if search.choices:
        parts = [ref.new_ones(1)]
        for choice in search.choices.values():
            p = choice.probabilities().detach() if expected else torch.nn.functional.one_hot(
                torch.tensor(choice.argmax()), len(choice.names))  # fmt: skip
            parts.append(p.to(ref.dtype))
        weights = torch.cat(parts)[fast.owner]
        u, v = u * weights, v * weights
    return torch.dot(cout, torch.addcmul(v, u, cin))


@contextmanager
def _saved_architecture(search: DNAS) -> Iterator[None]:
    """Restore every architecture parameter's value on exit."""
    saved = [(p, p.detach().clone()) for p in search.nas_parameters()]
    try:
        yield
    finally:
        with torch.no_grad():
            for p, value in saved:
                p.copy_(value)


def smallest_cost(search: DNAS, name: str) -> float:
    """The floor: hard cost of the smallest network of the search space (every channel mask
    at its one always-kept entry, every tap mask at its one always-kept tap, every choice at
    its cheapest candidate there). Costs are sums over layers, each inside at most one
    candidate, so the cheapest candidate of each choice is found one choice at a time."""
    with _saved_architecture(search), torch.no_grad():
        for mask in search._group_masks.values():
            mask.alpha.zero_()
        for taps in search._taps.values():
            for p in (taps.beta, taps.gamma):
                if p is not None:
                    p.zero_()
        for choice in search.choices.values():
            best = None
            for i in range(len(choice.names)):
                choice.alpha.fill_(0.0)
                choice.alpha[i] = 1.0
                cost = search.hard_cost(name)
                if best is None or cost < best[0]:
                    best = (cost, i)
            choice.alpha.fill_(0.0)
            choice.alpha[best[1]] = 1.0  # type: ignore[index]  # at least one candidate
        return float(search.hard_cost(name))
