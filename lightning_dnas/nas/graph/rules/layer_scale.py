"""A Parameter/buffer read with get_attr that an elementwise op broadcasts along the
channel dim (ConvNeXt's layer scale ``gamma[C, 1, 1] * y``, a learnable bias): sliced on
export with the channels it meets (see :mod:`.residual` for the ops). A 1-D one reshaped
for the op alone with ``-1`` on the channel dim (timm ConvNeXt's
``x.mul(self.gamma.reshape(1, -1, 1, 1))``) counts too: the ``-1`` follows the sliced
length, so the user's forward still runs on the export."""

from __future__ import annotations

from typing import Any

import torch
from torch import fx

from ..channel_layout import Layout
from ..context import Analysis
from ..ops import SLICED_TYPES, op_name


def channel_parameter(an: Analysis, node: fx.Node, value: Any, dim: int, layout: Layout) -> bool:
    """Record ``value``, a get_attr of a Parameter/buffer whose dim ``dim`` holds the
    channels of ``layout``, to be sliced on export; False if it is anything else."""
    via = None
    if isinstance(value, fx.Node) and op_name(value) in ("reshape", "view"):
        if len(value.users) != 1 or not sizes_for(value, dim):
            return False
        via, value, dim = value, value.args[0], 0
    if not isinstance(value, fx.Node) or value.op != "get_attr":
        return False
    target = str(value.target)
    owner, _, leaf = target.rpartition(".")
    module = an.modules.get(owner)
    if module is None or isinstance(module, SLICED_TYPES):
        return False  # a layer's own weight: sliced with the layer, not on its own
    tensor = getattr(module, leaf, None)
    if not isinstance(tensor, torch.Tensor) or (via is not None and tensor.dim() != 1) \
            or tensor.shape[dim] != layout.width:  # fmt: skip
        return False
    known = an.g.parameters.get(target)
    if known is not None and known[0] != dim:
        return False
    if known is not None:
        reason = f"`{node.name}` (a parameter shared by different channel groups)"
        an.groups.merge([an.groups.expand(known[1]), layout.with_dim(known[1].dim)], reason)
    else:
        an.g.parameters[target] = (dim, layout)
    an.parameter_uses.add(node if via is None else via)
    return True


def sizes_for(view: fx.Node, dim: int) -> bool:
    """Whether ``view`` reshapes a 1-D tensor to constant sizes that are 1 except for a
    ``-1`` at ``dim`` (the channel dim of the op it feeds)."""
    sizes = view.args[1:]
    if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
        sizes = tuple(sizes[0])
    return (dim < len(sizes) and all(type(s) is int for s in sizes)
            and all(s == (-1 if i == dim else 1) for i, s in enumerate(sizes)))  # fmt: skip
