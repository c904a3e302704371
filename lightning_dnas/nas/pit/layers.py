"""Search-time replacements of Conv/Linear/BatchNorm that apply PIT masks by folding them
into parameters (O(channels) or O(weights)) instead of multiplying feature maps.

* ``conv -> bn -> * mask`` is computed as a batch norm whose affine weight and bias are
  multiplied by the mask: ``BN(x) * m == (x - mu) / sigma * (g * m) + b * m``, exactly, with
  the same gradients for ``g``, ``b`` and ``m``.
* ``conv -> * mask`` (no BN after it) is a conv with ``W * m`` and ``b * m``.
* Conv1d time taps are masked as ``W * tap_mask`` along the kernel axis.
* A LayerNorm over the channels mixes them (mean and variance): it is computed over the
  kept channels only, as its exported (sliced) copy computes it (``layer_norm.py``).

Every masked layer keeps the user's module as ``.layer`` (same parameters, same state_dict entries
under that prefix), so training the search network trains the original weights.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from ..modules import set_submodule
from .masks import ChannelMask, Fold, TapMask, fold_versions


class ChannelVector:
    """The binarized mask over a whole channel dimension built from segment masks.

    ``parts`` lists ``(mask or None, size, rep)``: a None mask is a frozen segment (ones);
    a mask of ``size / unit`` entries covers ``unit`` consecutive channels per entry. The
    vector is ``cat(repeat_interleave(mask_k, unit_k * rep_k))``. Held as a plain object (not a
    module) so the masks stay registered once, in the search wrapper.
    """

    def __init__(self, parts: Sequence[tuple[ChannelMask | None, int, int]], detach: bool):
        self.parts = list(parts)
        self.detach = detach
        # The common case (one group, one channel per entry) skips the assembly: this runs
        # for every masked layer in every step, so Python overhead matters.
        mask, size, rep = self.parts[0]
        single = len(self.parts) == 1 and mask is not None and rep == 1
        self._direct = mask if single and mask.channels == size else None

    def __call__(self, like: Tensor) -> Tensor:
        if self._direct is not None:
            vec = self._direct.value()
            if self.detach:
                vec = vec.detach()
            return vec if vec.dtype == like.dtype else vec.to(like.dtype)
        pieces = []
        for mask, size, rep in self.parts:
            if mask is None:
                piece, times = like.new_ones(size), rep
            else:
                piece = mask.value()
                if self.detach:
                    piece = piece.detach()
                times = rep * size // piece.numel()
            pieces.append(piece.repeat_interleave(times) if times > 1 else piece)
        vec = pieces[0] if len(pieces) == 1 else torch.cat(pieces)
        return vec if vec.dtype == like.dtype else vec.to(like.dtype)


def _view_on(vec: Tensor, dim: int, rank: int) -> Tensor:
    shape = [1] * rank
    shape[dim] = vec.numel()
    return vec.view(shape)


class MaskedWrapper(nn.Module):
    """A masked layer: holds the user's module as ``.layer`` and answers for it any
    attribute it does not have itself, so that a forward reading the layer's attributes
    (``self.conv.out_channels``, ``self.bn.num_features``) runs unchanged on the search
    network (the values are the unpruned layer's, as the search network's tensors are)."""

    def __getattr__(self, name: str) -> Any:
        # Every ``self.layer`` of a forward lands here (submodules live in ``_modules``):
        # the common case is answered first, without nn.Module's three-dict search.
        modules = self.__dict__.get("_modules")
        if modules is not None and name in modules:
            return modules[name]
        try:
            return super().__getattr__(name)
        except AttributeError:
            layer = None if modules is None else modules.get("layer")
            if layer is None or name.startswith("_"):
                raise
            return getattr(layer, name)


class FoldedLayer(MaskedWrapper):
    """A masked layer whose mask-multiplied parameters a MaskBank may compute for the
    pass (``_folded``, see :meth:`current_fold`); ``folds_vector``: its parameters are
    vectors of the mask's size (a norm's), which the bank multiplies all at once."""

    folds_vector = False

    def __init__(self) -> None:
        super().__init__()
        self._folded: Fold | None = None

    def __getstate__(self) -> dict[str, Any]:
        """Copy/pickle state without this pass's folded parameters (an autograd graph)."""
        return dict(self.__dict__) | {"_folded": None}

    @property
    def fold_mask(self) -> ChannelMask | None:
        """The mask a bank may fold into this layer's parameters: the one mask covering
        every output channel, one entry per channel, not detached; else None."""
        raise NotImplementedError

    def current_fold(self) -> tuple[Tensor, Tensor | None] | None:
        """The bank's ``(weight * m, bias * m)`` of this pass while it is current (weight,
        bias and mask unchanged since, same grad mode, not compiling), else None."""
        # Compiled, the bank serves nothing (MaskBank.__call__): the graph must not read
        # (and guard on) a value an eager pass left.
        folded = None if torch.compiler.is_compiling() else self._folded
        if folded is None or folded[3] != torch.is_grad_enabled():
            return None
        # From _parameters directly: this runs for every folded layer in every step.
        params = self._modules["layer"]._parameters
        if folded[2] != fold_versions(params["weight"], params["bias"],
                                      folded[4]._parameters["alpha"]):  # fmt: skip
            return None
        return folded[0], folded[1]


class MaskedConv(FoldedLayer):
    """A Conv1d/2d/3d whose weight (and bias) carry the output-channel mask ``out`` (when
    the mask point is the conv itself) and, for Conv1d, the time-tap mask ``taps``.

    ``inp``: a detached mask multiplied into the input, given only when an op before the
    conv maps pruned (zero) channels to non-zero values (a sigmoid, a constant shift).
    """

    # Masks only scale the weights or broadcast over the input: any memory format of the
    # input gives the same values (SuperNet's fast path may run it in channels_last).
    layout_free = True

    def __init__(
        self, layer: nn.Module, out: ChannelVector | None, taps: TapMask | None,
        inp: ChannelVector | None = None,
    ) -> None:  # fmt: skip
        super().__init__()
        self.layer = layer
        self._out = out
        self._inp = inp
        self._taps = [taps] if taps is not None else []  # a list: not registered twice

    @property
    def fold_mask(self) -> ChannelMask | None:
        """See :attr:`FoldedLayer.fold_mask`; None with a tap mask (it scales the weight
        too)."""
        vec = self._out
        if vec is None or vec._direct is None or vec.detach or self._taps:
            return None
        return vec._direct

    def forward(self, x: Tensor) -> Tensor:
        conv = self.layer
        if self._inp is not None:
            x = x * _view_on(self._inp(x), 1, x.dim())
        current = self.current_fold()
        if current is not None:
            return conv._conv_forward(x, *current)
        weight, bias = conv.weight, conv.bias
        if self._taps:
            weight = weight * self._taps[0]().to(weight.dtype)
        if self._out is not None:
            m = self._out(weight)
            weight = weight * _view_on(m, 0, weight.dim())
            if bias is not None:
                bias = bias * m
        return conv._conv_forward(x, weight, bias)

    def borrowed_parameters(self) -> list[nn.Parameter]:
        """Parameters this layer's forward uses without owning them (the tap mask lives
        in the search wrapper): SuperNet's hard-mode fast path gives them zero gradients
        when this layer's candidate is not selected."""
        return [p for taps in self._taps for p in taps.parameters()]


class MaskedLinear(FoldedLayer):
    """A Linear whose weight rows and bias carry the output-channel mask ``out``; ``inp`` as
    for :class:`MaskedConv` (on the last dim)."""

    def __init__(
        self, layer: nn.Linear, out: ChannelVector | None, inp: ChannelVector | None = None
    ) -> None:
        super().__init__()
        self.layer = layer
        self._out = out
        self._inp = inp

    @property
    def fold_mask(self) -> ChannelMask | None:
        """See :attr:`FoldedLayer.fold_mask`."""
        vec = self._out
        return None if vec is None or vec._direct is None or vec.detach else vec._direct

    def forward(self, x: Tensor) -> Tensor:
        if self._inp is not None:
            x = x * self._inp(x)
        current = self.current_fold()
        if current is not None:
            return F.linear(x, *current)
        weight, bias = self.layer.weight, self.layer.bias
        if self._out is not None:
            m = self._out(weight)
            weight = weight * m.unsqueeze(1)
            bias = bias * m if bias is not None else None
        return F.linear(x, weight, bias)


# The positional parameters of the norm functions whose affine parameters are masked.
_AFFINE_CALLS = {
    F.batch_norm: ("input", "running_mean", "running_var", "weight", "bias"),
    F.group_norm: ("input", "num_groups", "weight", "bias", "eps"),
}


class _MaskedAffineMode(TorchFunctionMode):
    """Turns the ``F.batch_norm`` / ``F.group_norm`` calls (``func``) on ``norm``'s own
    weight into calls with the masked ``weight`` and ``bias`` while ``norm``'s own forward
    runs (a BatchNorm / GroupNorm subclass such as timm's BatchNormAct2d or GroupNormAct: its
    running-statistics bookkeeping, drop and activation stay its own); counts them in
    ``calls``."""

    def __init__(
        self, norm: nn.Module, func: Callable[..., Tensor], weight: Tensor, bias: Tensor | None
    ) -> None:
        super().__init__()
        self.norm, self.func, self.weight, self.bias, self.calls = norm, func, weight, bias, 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is not self.func:
            return func(*args, **kwargs)
        call = dict(zip(_AFFINE_CALLS[func], args, strict=False)) | kwargs
        if call.get("weight") is not self.norm.weight or call.get("bias") is not self.norm.bias:
            raise RuntimeError(f"{type(self.norm).__name__} called F.{func.__name__} on other "
                               "parameters than its own during the search")  # fmt: skip
        self.calls += 1
        rest = {k: v for k, v in call.items() if k not in ("weight", "bias")}
        return func(**rest, weight=self.weight, bias=self.bias)


def runs_own_forward(norm: nn.Module) -> bool:
    """Whether ``norm`` is a BatchNorm / GroupNorm subclass defined outside torch.nn, whose
    forward may add to the norm (timm's BatchNormAct2d, GroupNormAct: an activation)."""
    return isinstance(norm, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm)) and not (
        type(norm).__module__.startswith("torch.nn."))


class MaskedBatchNorm(FoldedLayer):
    """A BatchNorm/InstanceNorm/GroupNorm whose affine parameters are multiplied by a
    channel mask, so that pruned channels read exactly zero after it; running statistics
    are the wrapped module's and are updated exactly as it would update them. A GroupNorm's
    mask is constant over each of its groups (searched in whole groups): a kept group's
    statistics are those of its exported copy.

    A BatchNorm / GroupNorm subclass defined outside torch.nn (timm's BatchNormAct2d,
    GroupNormAct) runs its own forward, its ``F.batch_norm`` / ``F.group_norm`` call given
    the masked parameters (:class:`_MaskedAffineMode`): computing only the norm would drop
    what its forward adds (an activation)."""

    # The mask scales the affine parameters only (see MaskedConv.layout_free).
    layout_free = True
    folds_vector = True

    def __init__(self, layer: nn.Module, mask: ChannelVector):
        super().__init__()
        self.layer = layer
        self._mask = mask
        self._instance = isinstance(layer, nn.modules.instancenorm._InstanceNorm)
        self._group = isinstance(layer, nn.GroupNorm)
        self._own_forward = runs_own_forward(layer)

    @property
    def fold_mask(self) -> ChannelMask | None:
        """See :attr:`FoldedLayer.fold_mask`; None unless both affine parameters are
        present (folded here)."""
        bn, vec = self.layer, self._mask
        if vec._direct is None or vec.detach or bn.weight is None or bn.bias is None:
            return None
        return vec._direct

    def folded(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """``(weight * m, bias * m)``: the bank's values of this pass while they are
        current (:meth:`FoldedLayer.current_fold`), else computed here; without an affine
        weight, ``(m, None)``."""
        bn = self.layer
        current = self.current_fold()
        if current is not None:
            return current
        m = self._mask(x)
        weight = bn.weight * m if bn.weight is not None else m
        bias = bn.bias * m if bn.bias is not None else None
        return weight, bias

    def forward(self, x: Tensor) -> Tensor:
        bn = self.layer
        weight, bias = self.folded(x)
        if self._own_forward:
            func = F.group_norm if self._group else F.batch_norm
            mode = _MaskedAffineMode(bn, func, weight, bias)
            with mode:
                out = bn(x)
            if not mode.calls:  # the mask was never applied: the search would be wrong
                raise RuntimeError(f"{type(bn).__name__}'s forward did not call "
                                   f"F.{func.__name__}")  # fmt: skip
            return out
        if self._group:
            return F.group_norm(x, bn.num_groups, weight, bias, bn.eps)
        if self._instance:
            return F.instance_norm(
                x, bn.running_mean, bn.running_var, weight, bias,
                bn.training or not bn.track_running_stats, bn.momentum or 0.0, bn.eps,
            )  # fmt: skip
        # Same running-statistics bookkeeping as torch.nn.modules.batchnorm._BatchNorm.
        factor = 0.0 if bn.momentum is None else bn.momentum
        if bn.training and bn.track_running_stats and bn.num_batches_tracked is not None:
            bn.num_batches_tracked.add_(1)
            if bn.momentum is None:
                factor = 1.0 / float(bn.num_batches_tracked)
        use_batch = bn.training or (bn.running_mean is None and bn.running_var is None)
        stats_running = not bn.training or bn.track_running_stats
        return F.batch_norm(
            x,
            bn.running_mean if stats_running else None,
            bn.running_var if stats_running else None,
            weight, bias, use_batch, factor, bn.eps,
        )  # fmt: skip


def unwrap_masked(net: nn.Module) -> nn.Module:
    """Replace every masked layer of ``net`` by the plain layer it wraps (in place)."""
    for name, module in list(net.named_modules()):
        if isinstance(module, MaskedWrapper):
            set_submodule(net, name, module.layer)
    return net
