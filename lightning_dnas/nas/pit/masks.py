"""PIT mask parameters: output-channel masks and Conv1d time-tap masks (SPEC section 2).

Every mask is a trainable vector whose *theta* (a non-negative relaxation) is binarized with
a straight-through estimator (STE): forward ``theta > 0.5``, backward the identity.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

import torch
from torch import Tensor, nn

THRESHOLD = 0.5


Fold = tuple[Tensor, Tensor | None, tuple[int, int, int], bool, "ChannelMask"]
"""A :class:`MaskBank`'s value for a folded layer: ``(weight * m, bias * m,``
:func:`fold_versions` ``at the time, grad mode, the mask)``."""


def fold_versions(weight: Tensor, bias: Tensor | None, alpha: Tensor) -> tuple[int, int, int]:
    """``(weight, bias, alpha)._version`` (-1 for no bias): what a fold is computed from,
    written by the bank and compared by the layer that reads the fold."""
    return weight._version, -1 if bias is None else bias._version, alpha._version


class Folded(Protocol):
    """A masked layer whose parameters a :class:`MaskBank` multiplies by its mask
    (:class:`~lightning_dnas.nas.pit.layers.FoldedLayer`): ``layer`` has ``weight`` and
    ``bias`` (``None`` allowed unless ``folds_vector``), ``fold_mask`` is the one mask
    covering all its output channels (dim 0), ``folds_vector``: the parameters are vectors
    of the mask's size (a norm's); ``_folded`` receives the pass's :data:`Fold`."""

    layer: nn.Module
    fold_mask: ChannelMask
    folds_vector: bool
    _folded: Fold | None


def binarize(theta: Tensor) -> Tensor:
    """Straight-through binarization: forward ``(theta > 0.5)`` exactly, gradient 1 w.r.t. theta.

    Written as ``hard + (theta - theta.detach())`` rather than ``theta + (hard - theta).detach()``:
    ``x - x`` is exactly zero in floating point, so the forward value is exactly 0 or 1 and
    the masked network matches the exported one bit for bit.
    """
    hard = (theta > THRESHOLD).to(theta.dtype)
    return hard + (theta - theta.detach())


class MaskBank:
    """Binarizes every channel mask of a search network in one batch of tensor ops at the
    start of each forward pass (a forward pre-hook on the network's root), instead of a
    handful of ops per mask and per layer, and multiplies the masks into the parameters of
    the layers in ``folded`` (:class:`Folded`) in the same place. Masks and layers read
    their values.

    Why in one place: on CPU a step's small ops cost their overhead, and more where they
    fall between the network's large kernels, which leave the caches cold for them (with
    ResNet-8 at batch 32 the bank's call takes 0.30-0.38 ms inside a forward pass and
    0.1-0.2 ms alone; docs/BENCHMARKS.md). Together at the start of the pass they run on
    warm caches, and their gradients are computed together at the end of the backward
    pass.

    - Norms (``folds_vector``): ``cat(weights) * m`` and ``cat(biases) * m``, with ``m``
      the norms' masks gathered from the binarized vector, split back per norm (7 ops for
      all norms instead of two multiplies per norm forward, and 4 + 1 per norm backward).
    - Convs and linears: ``W * m`` and ``b * m`` with ``m`` on dim 0, one layer after the
      other.

    A value is used only while it is current: the parameters it was computed from are
    unchanged since (their ``_version``) and the grad mode is the same; otherwise the
    reader computes its own. So a layer called after an in-place update never reads a
    value computed before it.
    """

    def __init__(self, masks: list[ChannelMask], folded: Sequence[Folded] = ()) -> None:
        self.masks = masks
        self.sizes = [m.channels for m in masks]
        self.norms = [n for n in folded if n.folds_vector]
        self.layers = [n for n in folded if not n.folds_vector]
        slot = {id(m): i for i, m in enumerate(masks)}
        self._norm_slots = [slot[id(n.fold_mask)] for n in self.norms]
        self._layer_slots = [slot[id(n.fold_mask)] for n in self.layers]
        self._norm_sizes = [self.sizes[s] for s in self._norm_slots]
        # The norms' masks, concatenated, as positions in the concatenation of all masks.
        starts = [sum(self.sizes[:i]) for i in range(len(masks))]
        self._gather = torch.tensor([starts[s] + c for s in self._norm_slots
                                     for c in range(self.sizes[s])], dtype=torch.long)  # fmt: skip
        self._constants: tuple[torch.device, torch.dtype, Tensor, Tensor, Tensor] | None = None
        self._alpha: tuple[Tensor, tuple[int, ...], bool] | None = None
        self._live = True
        for m in masks:
            m.bank = self

    def __getstate__(self) -> dict[str, object]:
        """Copy/pickle state without this pass's values (they may hold an autograd graph)."""
        return dict(self.__dict__) | {"_constants": None, "_alpha": None}

    def disconnect(self) -> None:
        """Stop serving values (its pre-hook was removed): every mask and folded layer
        computes its own from now on; :meth:`alphas` concatenates afresh."""
        for m in self.masks:
            m.bank, m._current = None, None
        for n in (*self.norms, *self.layers):
            n._folded = None
        self._alpha, self._live = None, False

    def _alphas(self) -> list[Tensor]:
        # From _parameters directly: nn.Module.__getattr__ would run once per mask.
        return [m._parameters["alpha"] for m in self.masks]

    def alphas(self) -> Tensor:
        """``cat(alpha_1, ..., alpha_n)`` over the bank's masks: this pass's concatenation
        while it is current, so that the soft cost adds no concatenation (and no split of
        the gradient) of its own; else a new one."""
        cached, alphas = self._alpha, self._alphas()
        if (cached is not None and cached[2] == torch.is_grad_enabled()
                and not torch.compiler.is_compiling()
                and cached[1] == tuple(a._version for a in alphas)):  # fmt: skip
            return cached[0]
        return torch.cat(alphas)

    def _constants_like(self, like: Tensor) -> tuple[torch.device, torch.dtype, Tensor, Tensor,
                                                     Tensor]:  # fmt: skip
        """``(device, dtype, scale, offset, gather)``: the masks' concatenated ``scale`` and
        ``offset`` and the norms' gather index, on ``like``'s device (and dtype), built once
        per device and dtype: they never change."""
        cached = self._constants
        if cached is None or cached[0] != like.device or cached[1] != like.dtype:
            scale = torch.cat([m._scale for m in self.masks]).to(like)
            offset = torch.cat([m._offset for m in self.masks]).to(like)
            gather = self._gather.to(like.device)
            cached = self._constants = (like.device, like.dtype, scale, offset, gather)
        return cached

    def __call__(self, *_: object) -> None:
        """Compute all binarized masks (and folded layer parameters) for this pass
        (signature of a forward pre-hook).

        Under ``torch.compile`` it does nothing: each mask then binarizes its own alpha
        (:meth:`ChannelMask.forward`), which the compiler fuses into a few kernels anyway,
        and the graph holds no Python-side cache whose validity would need a guard.
        """
        if not self.masks or not self._live or torch.compiler.is_compiling():
            return
        alphas = self._alphas()
        alpha = torch.cat(alphas)
        versions, grad = tuple(a._version for a in alphas), torch.is_grad_enabled()
        _, _, scale, offset, gather = self._constants_like(alpha)
        hard = binarize(torch.addcmul(offset, alpha.abs(), scale))
        values = hard.split(self.sizes)
        self._alpha = (alpha, versions, grad)
        for m, value, version in zip(self.masks, values, versions, strict=True):
            # Into __dict__ directly: nn.Module.__setattr__'s checks would run per mask.
            m.__dict__["_current"] = (value, version, grad)
        if self.norms:
            self._fold(hard[gather], alphas, grad)
        if self.layers:
            self._fold_layers(values, alphas, grad)

    def _fold(self, m: Tensor, alphas: list[Tensor], grad: bool) -> None:
        """Every norm's ``(weight * m, bias * m)`` from ``m``, their masks concatenated."""
        params = [n._modules["layer"]._parameters for n in self.norms]
        weights = [p["weight"] for p in params]
        biases = [p["bias"] for p in params]
        if any(t.dtype != m.dtype for t in (*weights, *biases)):
            for n in self.norms:  # a norm in another dtype (rare): each computes its own
                n.__dict__["_folded"] = None
            return
        ws = (torch.cat(weights) * m).split(self._norm_sizes)
        bs = (torch.cat(biases) * m).split(self._norm_sizes)
        for n, w, b, s, fw, fb in zip(self.norms, weights, biases, self._norm_slots, ws, bs,
                                      strict=True):  # fmt: skip
            n.__dict__["_folded"] = (fw, fb, fold_versions(w, b, alphas[s]), grad, self.masks[s])

    def _fold_layers(self, values: Sequence[Tensor], alphas: list[Tensor], grad: bool) -> None:
        """Every conv's / linear's ``(W * m, b * m)``, ``m`` its mask's value on dim 0."""
        for n, s in zip(self.layers, self._layer_slots, strict=True):
            params = n._modules["layer"]._parameters
            w, b, m = params["weight"], params["bias"], values[s]
            if w.dtype != m.dtype or (b is not None and b.dtype != m.dtype):
                n.__dict__["_folded"] = None  # another dtype (rare): it computes its own
                continue
            fw = w * m.view(-1, *([1] * (w.dim() - 1)))
            fb = None if b is None else b * m
            n.__dict__["_folded"] = (fw, fb, fold_versions(w, b, alphas[s]), grad, self.masks[s])


class ChannelMask(nn.Module):
    """Output-channel mask of one channel group: ``alpha`` (init 1.0, one per channel).

    ``theta = |alpha|`` except the last channel, which is kept alive (``theta_last = 1``
    whatever alpha), so a group never loses all its channels. The soft channel count used by
    the costs is ``sum(theta)`` (not clipped); the hard count is ``sum(theta > 0.5)``.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"a channel mask needs at least one channel, got {channels}")
        self.alpha = nn.Parameter(torch.ones(channels))
        # theta = |alpha| * scale + offset keeps the last channel at 1 without a concatenation.
        scale = torch.ones(channels)
        scale[-1] = 0.0
        self.register_buffer("_scale", scale, persistent=False)
        self.register_buffer("_offset", 1.0 - scale, persistent=False)
        self.bank: MaskBank | None = None
        self._current: tuple[Tensor, int, bool] | None = None

    def __getstate__(self) -> dict[str, object]:
        """Copy/pickle state without this pass's value (it may hold an autograd graph)."""
        state = dict(self.__dict__)
        state["_current"] = None
        return state

    @property
    def channels(self) -> int:
        """Number of channels the mask covers."""
        return self.alpha.numel()

    def theta(self) -> Tensor:
        """The relaxed mask ``|alpha|`` with the last entry fixed at 1, shape ``[C]``."""
        return self.alpha.abs() * self._scale + self._offset

    def forward(self) -> Tensor:
        """The binarized mask (STE), shape ``[C]``: :meth:`value`."""
        return self.value()

    def value(self) -> Tensor:
        """The binarized mask (STE), shape ``[C]``: the value its :class:`MaskBank`
        computed for the current forward pass, or computed here when there is none,
        ``alpha`` changed in place since, the grad mode differs, or the call is being
        compiled. (The masked layers call this rather than the module: ``nn.Module``'s
        call machinery would run for every masked layer in every step.)"""
        # Under torch.compile the cache is bypassed: reading ``_version`` is a
        # data-dependent value to dynamo (a graph break in every masked layer, then one
        # recompilation per layer shape); the recomputation is fused and costs nothing.
        if torch.compiler.is_compiling():
            return binarize(self.theta())
        current = self._current
        if (current is not None and current[1] == self._parameters["alpha"]._version
                and current[2] == torch.is_grad_enabled()):  # fmt: skip
            return current[0]
        return binarize(self.theta())

    def kept(self) -> Tensor:
        """Indices of the channels that survive binarization (sorted, never empty)."""
        with torch.no_grad():
            return torch.nonzero(self.theta() > THRESHOLD).flatten()


def dilation_levels(kernel_size: int) -> int:
    """Length of the dilation mask ``gamma``: ``max(ceil(log2 K), 1)``."""
    return max(math.ceil(math.log2(kernel_size)), 1)


class TapMask(nn.Module):
    """Receptive-field (``beta``) and dilation (``gamma``) masks of a Conv1d with kernel ``K``.

    Kernel index ``i`` counts from the oldest tap (``i = 0``) to the most recent (``i = K-1``);
    ``j = K-1-i`` counts taps back from the most recent one.

    * ``theta_beta[i] = sum_{l <= i} |beta_l|`` with ``beta_{K-1} := 1``: a cumulative sum, so
      binarizing it keeps a suffix of the most recent taps (example: beta ``[.25, .4, .4]``
      -> theta ``[.25, .65, 1.65]`` -> ``[0, 1, 1]``).
    * ``theta_gamma(j) = sum_{l < L} [j % 2**l == 0] |gamma_l|`` with ``gamma_{L-1} := 1``:
      binarizing it keeps the taps at multiples of a power of two back from the most recent
      one (example K=3, gamma ``[.2, .5]`` -> ``[1.2, .2, 1.2]`` -> ``[1, 0, 1]``, dilation 2).

    The most recent tap always survives both masks. ``train_rf`` / ``train_dilation`` set to
    False keep that mask at all-ones without creating its parameter.
    """

    def __init__(self, kernel_size: int, train_rf: bool = True, train_dilation: bool = True):
        super().__init__()
        if kernel_size < 2:
            raise ValueError(f"a tap mask needs a kernel of at least 2 taps, got {kernel_size}")
        k = kernel_size
        levels = dilation_levels(k)
        self.kernel_size = k
        self.beta = nn.Parameter(torch.ones(k)) if train_rf else None
        self.gamma = nn.Parameter(torch.ones(levels)) if train_dilation and levels > 1 else None
        alive_beta = torch.ones(k)
        alive_beta[-1] = 0.0
        self.register_buffer("_beta_scale", alive_beta, persistent=False)
        self.register_buffer("_beta_offset", 1.0 - alive_beta, persistent=False)
        cumsum = torch.tril(torch.ones(k, k))
        self.register_buffer("_cumsum", cumsum, persistent=False)
        # _beta_norm[i] = 1 / (number of betas summed into theta_beta[i]) = 1 / (i + 1).
        self.register_buffer("_beta_norm", 1.0 / torch.arange(1, k + 1).float(), persistent=False)
        alive_gamma = torch.ones(levels)
        alive_gamma[-1] = 0.0
        self.register_buffer("_gamma_scale", alive_gamma, persistent=False)
        self.register_buffer("_gamma_offset", 1.0 - alive_gamma, persistent=False)
        # _dil[i, l] = 1 when tap i (j = K-1-i taps back from the most recent) is a multiple
        # of 2**l back; counting from the most recent tap keeps it alive for every K.
        dil = torch.zeros(k, levels)
        for i in range(k):
            j = k - 1 - i
            for level in range(levels):
                dil[i, level] = float(j % (2**level) == 0)
        self.register_buffer("_dil", dil, persistent=False)
        self.register_buffer("_gamma_norm", 1.0 / dil.sum(1), persistent=False)
        self.register_buffer("_ones", torch.ones(k), persistent=False)

    def theta_beta(self) -> Tensor:
        """Per-tap receptive-field relaxation, shape ``[K]`` (all ones when RF is frozen)."""
        if self.beta is None:
            return self._ones
        beta = self.beta.abs() * self._beta_scale + self._beta_offset
        return self._cumsum @ beta

    def theta_gamma(self) -> Tensor:
        """Per-tap dilation relaxation, shape ``[K]`` (all ones when dilation is frozen)."""
        if self.gamma is None:
            return self._ones
        gamma = self.gamma.abs() * self._gamma_scale + self._gamma_offset
        return self._dil @ gamma

    def forward(self) -> Tensor:
        """Binarized per-tap mask ``bin(theta_beta) * bin(theta_gamma)`` (STE), shape ``[K]``."""
        mask = None
        if self.beta is not None:
            mask = binarize(self.theta_beta())
        if self.gamma is not None:
            g = binarize(self.theta_gamma())
            mask = g if mask is None else mask * g
        return self._ones if mask is None else mask

    def soft_taps(self) -> Tensor:
        """Differentiable effective kernel size.

        ``k_eff = sum_i (theta_beta[i] / (i+1)) * (theta_gamma[i] / n_i)`` where ``n_i`` is the
        number of gammas summed into tap ``i``: each factor is 1 at init, so ``k_eff = K``
        at init for every K (PLiNIO normalises the dilation term in the flipped direction and
        gets e.g. 9.17 for K=6).
        """
        beta = self.theta_beta()
        if self.beta is not None:
            beta = beta * self._beta_norm
        gamma = self.theta_gamma()
        if self.gamma is not None:
            gamma = gamma * self._gamma_norm
        return (beta * gamma).sum()

    def kept_taps(self) -> list[int]:
        """Kernel indices kept by both binarized masks (ascending, always includes ``K-1``)."""
        with torch.no_grad():
            keep = (self.theta_beta() > THRESHOLD) & (self.theta_gamma() > THRESHOLD)
        return [int(i) for i in torch.nonzero(keep).flatten()]
