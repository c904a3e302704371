"""Plain torch.nn layers sliced from trained ones: the building blocks of ``export()``.

Every function copies the kept rows/columns/taps of the trained tensors (never
re-initialises): Conv/Linear into a fresh module of the same type, per-channel norms and
PReLU into a copy of the module itself (a subclass keeps its attributes and forward).
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Sequence

import torch
from torch import nn

Keep = Sequence[int] | None


def _index(keep: Keep, size: int, device: torch.device) -> torch.Tensor:
    idx = range(size) if keep is None else keep
    return torch.as_tensor(list(idx), dtype=torch.long, device=device)


def _count(keep: Keep, size: int) -> int:
    return size if keep is None else len(keep)


def _padding_1d(conv: nn.Conv1d) -> tuple[int, int]:
    """(left, right) zero padding of a Conv1d, resolving ``"same"`` / ``"valid"``."""
    if conv.padding == "valid":
        return 0, 0
    if conv.padding == "same":
        total = conv.dilation[0] * (conv.kernel_size[0] - 1)
        return total // 2, total - total // 2
    p = int(conv.padding[0])
    return p, p


def tap_geometry(conv: nn.Conv1d, taps: Sequence[int]) -> tuple[int, int, tuple[int, int]]:
    """Kernel size, dilation and (left, right) padding of a Conv1d that keeps ``taps``.

    Kept taps must be evenly spaced and end at the most recent one (index ``K-1``), which is
    what the PIT masks produce. The kept taps keep their original offsets: with original
    padding ``(pl, pr)`` and first kept tap ``i0``, the new padding is ``(pl - i0*d, pr)``
    (negative = crop), so the exported conv computes the same function.
    """
    k_orig, d_orig = conv.kernel_size[0], conv.dilation[0]
    taps = sorted(taps)
    if not taps or taps[-1] != k_orig - 1:
        raise ValueError(f"kept taps {taps} of a kernel of {k_orig} must include tap {k_orig-1}")
    steps = {b - a for a, b in itertools.pairwise(taps)}
    if len(steps) > 1:
        raise ValueError(f"kept taps {taps} are not evenly spaced; cannot express a dilation")
    step = steps.pop() if steps else 1
    left, right = _padding_1d(conv)
    return len(taps), step * d_orig if len(taps) > 1 else 1, (left - taps[0] * d_orig, right)


def export_conv(conv: nn.Module, in_keep: Keep, out_keep: Keep, taps: Keep = None) -> nn.Module:
    """Slice a Conv1d/2d/3d: output channels ``out_keep``, input channels ``in_keep`` (for a
    depthwise or grouped conv with as many outputs as inputs, both are the same channels,
    whole groups), Conv1d kernel taps ``taps``.

    Returns a conv of the same type, or ``Sequential(ConstantPad1d, Conv1d)`` when the kept
    taps need asymmetric padding.
    """
    w = conv.weight.detach()
    dev = w.device
    grouped = conv.groups > 1 and conv.in_channels == conv.out_channels
    out_idx = _index(out_keep, conv.out_channels, dev)
    if grouped:  # depthwise or grouped: whole groups kept, each reading its own channels
        w = w[out_idx]
        cin = len(out_idx)
        groups = cin // (conv.in_channels // conv.groups)
    elif conv.groups == 1:
        in_idx = _index(in_keep, conv.in_channels, dev)
        w = w[out_idx][:, in_idx]
        cin, groups = len(in_idx), 1
    else:
        if in_keep is not None or out_keep is not None:
            raise ValueError("grouped convolutions are kept whole in this version")
        cin, groups = conv.in_channels, conv.groups
    kwargs = dict(
        stride=conv.stride, dilation=conv.dilation, padding=conv.padding, groups=groups,
        bias=conv.bias is not None, padding_mode=conv.padding_mode, device=dev, dtype=w.dtype,
    )  # fmt: skip
    pad = None
    kernel = conv.kernel_size
    if taps is not None:
        k, d, (left, right) = tap_geometry(conv, taps)
        w = w[..., _index(taps, conv.kernel_size[0], dev)]
        kernel, kwargs["dilation"] = (k,), (d,)
        if left == right and left >= 0:
            kwargs["padding"] = (left,)
        else:
            kwargs["padding"] = (0,)
            pad = nn.ConstantPad1d((left, right), 0.0)
    new = type(conv)(cin, len(out_idx), kernel, **kwargs)
    with torch.no_grad():
        new.weight.copy_(w)
        if conv.bias is not None:
            new.bias.copy_(conv.bias.detach()[out_idx])
    new.train(conv.training)
    return nn.Sequential(pad, new) if pad is not None else new


def export_linear(lin: nn.Linear, in_keep: Keep, out_keep: Keep) -> nn.Linear:
    """Slice a Linear: rows ``out_keep``, columns ``in_keep``."""
    w = lin.weight.detach()
    out_idx = _index(out_keep, lin.out_features, w.device)
    in_idx = _index(in_keep, lin.in_features, w.device)
    new = nn.Linear(len(in_idx), len(out_idx), bias=lin.bias is not None,
                    device=w.device, dtype=w.dtype)  # fmt: skip
    with torch.no_grad():
        new.weight.copy_(w[out_idx][:, in_idx])
        if lin.bias is not None:
            new.bias.copy_(lin.bias.detach()[out_idx])
    new.train(lin.training)
    return new


def _sliced_copy(module: nn.Module, names: Sequence[str], keep: Keep, size: int) -> nn.Module:
    """A deep copy of ``module`` whose own tensors ``names`` (parameters or buffers, channels
    on dim 0) are cut to the channels ``keep`` of ``size``: every other attribute, submodule
    (a norm-act's activation) and the class itself are the trained module's, so a subclass
    with its own forward or constructor arguments computes what it computed (a fresh
    ``type(module)(...)`` would drop them, or not even construct)."""
    new = copy.deepcopy(module)
    for name in names:
        src = getattr(module, name, None)
        if src is None:
            continue
        cut = src.detach()[_index(keep, size, src.device)].clone()
        if isinstance(src, nn.Parameter):
            setattr(new, name, nn.Parameter(cut, requires_grad=src.requires_grad))
        else:
            setattr(new, name, cut)  # a registered buffer stays a buffer (same persistence)
    return new


def export_norm(norm: nn.Module, keep: Keep) -> nn.Module:
    """Slice a BatchNorm/InstanceNorm (or a subclass: timm's BatchNormAct2d keeps its
    activation) to channels ``keep``: affine parameters and running statistics are the
    trained ones (PLiNIO re-initialises them); every other attribute is kept."""
    new = _sliced_copy(norm, ("weight", "bias", "running_mean", "running_var"), keep,
                       norm.num_features)  # fmt: skip
    new.num_features = _count(keep, norm.num_features)
    return new


def export_prelu(prelu: nn.PReLU, keep: Keep) -> nn.PReLU:
    """Slice a per-channel PReLU to channels ``keep`` (trained slopes)."""
    new = _sliced_copy(prelu, ("weight",), keep, prelu.num_parameters)
    new.num_parameters = new.weight.numel()
    return new


def export_group_norm(norm: nn.GroupNorm, keep: Keep) -> nn.GroupNorm:
    """Slice a GroupNorm of ``G`` groups of ``k = C / G`` channels to channels ``keep``,
    which must be whole groups (``k`` consecutive channels starting at a multiple of ``k``,
    as the search keeps them): a copy of the module (a subclass such as timm's GroupNormAct
    keeps its class, activation and every attribute) with the trained affine parameters of
    the kept channels and ``num_groups = len(keep) / k``. Each kept group normalises over the
    same channels as before, so the copy computes the kept channels exactly."""
    size = norm.num_channels // norm.num_groups
    if keep is not None:
        starts = keep[::size]
        whole = len(keep) % size == 0 and all(
            start % size == 0 and list(keep[i * size:(i + 1) * size]) == list(
                range(start, start + size)) for i, start in enumerate(starts))  # fmt: skip
        if not whole:
            raise ValueError(f"a GroupNorm of {norm.num_groups} groups of {size} channels "
                             f"keeps whole groups only, not channels {list(keep)}")  # fmt: skip
    new = _sliced_copy(norm, ("weight", "bias"), keep, norm.num_channels)
    new.num_channels = _count(keep, norm.num_channels)
    new.num_groups = new.num_channels // size
    return new


def export_layer_norm(norm: nn.LayerNorm, keep: Keep) -> nn.LayerNorm:
    """Slice a LayerNorm over one (channel) dim to channels ``keep``: a copy of the module
    (a subclass such as LayerNorm2d keeps its class and forward) with ``normalized_shape``,
    weight and bias cut to the kept channels."""
    if len(norm.normalized_shape) != 1:
        raise ValueError("only a LayerNorm over one dim can be sliced")
    new = _sliced_copy(norm, ("weight", "bias"), keep, norm.normalized_shape[0])
    new.normalized_shape = (_count(keep, norm.normalized_shape[0]),)
    return new


def slice_tensor(tensor: torch.Tensor, dim: int, keep: Keep) -> torch.Tensor:
    """``tensor`` cut to the indices ``keep`` along ``dim``; a Parameter stays a Parameter
    (trained values, same ``requires_grad``)."""
    out = tensor.detach().index_select(dim, _index(keep, tensor.shape[dim], tensor.device))
    if isinstance(tensor, nn.Parameter):
        return nn.Parameter(out, requires_grad=tensor.requires_grad)
    return out
