"""The search-time LayerNorm over the channel dim: computed over the kept channels only,
as its exported (sliced) copy computes it; the one masked layer that needs extra passes
over its feature map (a LayerNorm mixes its channels: mean and variance)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from .layers import ChannelVector, MaskedWrapper


def kept_layer_norm(
    x: Tensor, m: Tensor, weight: Tensor | None, bias: Tensor | None, eps: float
) -> Tensor:
    """Layer norm over the last dim restricted to the channels where the binary mask ``m``
    is 1, zero on the others: ``((x - mean) / sqrt(var + eps) * w + b) * m`` with
    ``mean = sum(m x) / sum(m)``, ``var = sum(m (x - mean)^2) / sum(m)``. Equals the sliced
    LayerNorm on the kept channels; the mask gets gradients through the statistics and the
    output (STE). The sums are matrix-vector products: no masked copy of ``x``."""
    kept = m.sum()
    mean = (x @ m).unsqueeze(-1) / kept
    centred = x - mean
    var = ((centred * centred) @ m).unsqueeze(-1) / kept
    scale = m if weight is None else weight * m  # O(channels): folded, not a feature-map pass
    normed = centred * torch.rsqrt(var + eps)
    return normed * scale if bias is None else torch.addcmul(bias * m, normed, scale)


class _KeptChannelsMode(TorchFunctionMode):
    """Turns the ``F.layer_norm`` calls on ``norm``'s own weight into
    :func:`kept_layer_norm` while ``norm``'s forward runs (its forward may permute around
    the call, as torchvision's LayerNorm2d does)."""

    def __init__(self, norm: nn.LayerNorm, mask: Tensor) -> None:
        super().__init__()
        self.norm, self.mask = norm, mask

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is not F.layer_norm:
            return func(*args, **kwargs)
        names = ("input", "normalized_shape", "weight", "bias", "eps")
        call = dict(zip(names, args, strict=False)) | kwargs
        weight, bias = call.get("weight"), call.get("bias")
        if weight is not self.norm.weight or bias is not self.norm.bias:
            # The analysis saw only calls on the module's own parameters: anything else
            # would be computed over all channels and no longer match the export.
            raise RuntimeError(f"{type(self.norm).__name__} called F.layer_norm on other "
                               "parameters than its own during the search")  # fmt: skip
        return kept_layer_norm(call["input"], self.mask, weight, bias, call.get("eps", 1e-5))


class MaskedLayerNorm(MaskedWrapper):
    """A LayerNorm (or a subclass calling ``F.layer_norm`` on its own parameters, like
    torchvision's LayerNorm2d) over the channel dim, computed over the kept channels only
    (:func:`kept_layer_norm`), so that it equals its exported, sliced copy. The wrapped
    module's forward runs unchanged; its mask is not detached."""

    def __init__(self, layer: nn.LayerNorm, mask: ChannelVector):
        super().__init__()
        self.layer = layer
        self._mask = mask

    def forward(self, *args, **kwargs) -> Tensor:
        with _KeptChannelsMode(self.layer, self._mask(args[0])):
            return self.layer(*args, **kwargs)
