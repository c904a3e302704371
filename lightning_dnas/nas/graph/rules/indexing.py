"""Basic indexing of a tensor (``x[:, 0]``, ``x[..., None]``): the channel dim moves as
indices drop or add dims before it; indexing the channel dim itself, or with a tensor,
keeps the channels whole."""

from __future__ import annotations

from torch import fx

from ..channel_layout import Layout
from ..context import Analysis
from ..ops import names, shape_of
from ..registry import function_rule


@function_rule(*names("index"))
def getitem(an: Analysis, node: fx.Node, name: str, src: Layout | None) -> Layout | None:
    """``x[index]``: the layout of ``x`` on the dim its channels land on."""
    if src is None:
        return None
    index = node.args[1]
    rank = len(shape_of(node.args[0]) or ())
    index = index if isinstance(index, tuple) else (index,)
    if any(isinstance(i, fx.Node) for i in index):
        return an.freeze_inputs(node, "tensor indexing")
    if Ellipsis in index:
        at = index.index(Ellipsis)
        used = sum(1 for i in index if i is not None and i is not Ellipsis)
        index = index[:at] + (slice(None),) * (rank - used) + index[at + 1 :]
    in_dim, out_dim = 0, 0
    for entry in index:
        if entry is None:
            out_dim += 1
            continue
        if in_dim == src.dim:
            if entry != slice(None):
                return an.freeze_inputs(node, "indexing of the channel dim")
            return src.with_dim(out_dim)
        if isinstance(entry, slice):
            out_dim += 1
        in_dim += 1
    return src.with_dim(out_dim + src.dim - in_dim)
