"""A Parameter/buffer read with get_attr that an elementwise op broadcasts along the
channel dim (ConvNeXt's layer scale ``gamma[C, 1, 1] * y``, a learnable bias): sliced on
export with the channels it meets (see :mod:`.residual` for the ops)."""

from __future__ import annotations

from typing import Any

import torch
from torch import fx

from ..channel_layout import Layout
from ..context import Analysis
from ..ops import SLICED_TYPES


def channel_parameter(an: Analysis, node: fx.Node, value: Any, dim: int, layout: Layout) -> bool:
    """Record ``value``, a get_attr of a Parameter/buffer whose dim ``dim`` holds the
    channels of ``layout``, to be sliced on export; False if it is anything else."""
    if not isinstance(value, fx.Node) or value.op != "get_attr":
        return False
    target = str(value.target)
    owner, _, leaf = target.rpartition(".")
    module = an.modules.get(owner)
    if module is None or isinstance(module, SLICED_TYPES):
        return False  # a layer's own weight: sliced with the layer, not on its own
    tensor = getattr(module, leaf, None)
    if not isinstance(tensor, torch.Tensor) or tensor.shape[dim] != layout.width:
        return False
    known = an.g.parameters.get(target)
    if known is not None and known[0] != dim:
        return False
    if known is not None:
        reason = f"`{node.name}` (a parameter shared by different channel groups)"
        an.groups.merge([an.groups.expand(known[1]), layout.with_dim(known[1].dim)], reason)
    else:
        an.g.parameters[target] = (dim, layout)
    an.parameter_uses.add(node)
    return True
