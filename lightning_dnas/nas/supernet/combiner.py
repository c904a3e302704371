"""Combiner maths of the SuperNet: mixing weights ``theta`` from logits ``alpha``, and ICV.

Notation: ``alpha`` are the architecture logits of one SuperNet module (``n`` entries),
``T > 0`` the temperature, ``g_i ~ Gumbel(0, 1)`` i.i.d. noise. The four modes are

- ``"softmax"``:      ``theta = softmax(alpha / T)``
- ``"gumbel"``:       ``theta = softmax((alpha + g) / T)`` (Gumbel-softmax, Jang et al.
  2016; the thesis' eq. 4.4 writes ``log(alpha_i)`` for ``alpha`` given as
  probabilities, which is the same thing for logits)
- ``"hard_softmax"``: forward ``one_hot(argmax(alpha / T))``, backward through
  ``softmax(alpha / T)`` (straight-through estimator)
- ``"hard_gumbel"``:  forward ``one_hot(argmax((alpha + g) / T))``, backward through
  ``softmax((alpha + g) / T)`` (straight-through estimator)

The straight-through weights are built as ``theta = one_hot + (soft - soft.detach())``:
their forward value is *exactly* the one-hot vector (``x - x == 0`` in floating point),
and their gradient is the gradient of ``soft``, so ``alpha`` gets a non-zero gradient in
both hard modes (PLiNIO's non-Gumbel hard mode gives it none).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "HARD_MODES",
    "MODES",
    "gumbel_noise",
    "icv",
    "mixing_weights",
    "validate_mode",
    "validate_temperature",
]

MODES: tuple[str, ...] = ("softmax", "gumbel", "hard_softmax", "hard_gumbel")
"""Valid names of the ways to turn ``alpha`` into ``theta`` (see the module docstring)."""

HARD_MODES: tuple[str, ...] = ("hard_softmax", "hard_gumbel")
"""Modes whose forward ``theta`` is one-hot (one candidate selected per forward)."""


def validate_mode(mode: str) -> str:
    """Return ``mode`` if it is one of :data:`MODES`, else raise ``ValueError`` naming them."""
    if mode not in MODES:
        raise ValueError(f"unknown softmax mode {mode!r}; allowed values are {list(MODES)}")
    return mode


def validate_temperature(temperature: float) -> float:
    """Return ``temperature`` as a ``float`` if it is finite and ``> 0``, else ``ValueError``."""
    if isinstance(temperature, bool):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    try:
        value = float(temperature)
    except (TypeError, ValueError):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}") from None
    if not (math.isfinite(value) and value > 0.0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    return value


def gumbel_noise(like: Tensor) -> Tensor:
    """Draw i.i.d. ``Gumbel(0, 1)`` noise shaped like ``like`` from the global RNG.

    ``g = -log(E)`` with ``E ~ Exponential(1)``, which equals ``-log(-log(U))`` with
    ``U ~ Uniform(0, 1)`` in distribution. This is the sampler of
    ``torch.nn.functional.gumbel_softmax``, so the same seed gives the same noise.
    """
    return -torch.empty_like(like).exponential_().log()


def mixing_weights(
    alpha: Tensor, mode: str, temperature: float | Tensor, noise: Tensor | None = None
) -> Tensor:
    """Weights ``theta`` that mix the candidates' outputs, differentiable w.r.t. ``alpha``.

    Args:
        alpha: logits, shape ``(n,)``.
        mode: one of :data:`MODES` (formulas in the module docstring).
        temperature: ``T > 0``; the logits (plus noise) are divided by it (a 0-dim tensor
            under ``torch.compile``, see ``SuperNetModule``; not validated again).
        noise: Gumbel noise for the ``"gumbel"`` modes; drawn with :func:`gumbel_noise`
            when ``None``. Ignored by the non-Gumbel modes.

    Returns:
        ``theta`` of shape ``(n,)``. Soft modes: a probability vector. Hard modes: the
        exact one-hot vector of ``argmax(logits)`` (first index on ties) in the forward,
        with the straight-through gradient of ``softmax(logits)`` where ``logits`` is
        ``alpha / T`` or ``(alpha + g) / T``.
    """
    validate_mode(mode)
    if not isinstance(temperature, Tensor):  # a tensor was validated when it was set
        temperature = validate_temperature(temperature)
    logits = alpha
    if mode in ("gumbel", "hard_gumbel"):
        logits = alpha + (gumbel_noise(alpha) if noise is None else noise)
    soft = F.softmax(logits / temperature, dim=-1)
    if mode not in HARD_MODES:
        return soft
    one_hot = F.one_hot(soft.detach().argmax(dim=-1), soft.shape[-1]).to(soft.dtype)
    return one_hot + (soft - soft.detach())


def icv(theta: Tensor, eps: float = 1e-3) -> Tensor:
    """ICV polarisation loss of one module's weights: ``mean(theta)^2 / (var(theta) + eps)``.

    ``var`` is the unbiased variance ``sum_i (theta_i - mean)^2 / (n - 1)``. Minimising
    the ICV ("inverse coefficient of variation") pushes ``theta`` towards a one-hot
    vector. For ``n = 4`` equal weights ``theta_i = 1/4``: ``(1/16) / 1e-3 = 62.5``.
    The thesis prints ``mean / (var + eps)``; its code (and ours) squares the mean.

    Raises:
        ValueError: if ``theta`` has fewer than two entries (variance undefined).
    """
    if theta.numel() < 2:
        raise ValueError(f"icv needs at least two weights, got {theta.numel()}")
    return theta.mean() ** 2 / (theta.var(correction=1) + eps)
