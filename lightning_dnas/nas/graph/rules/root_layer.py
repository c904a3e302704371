"""The root layer: a network that is itself one Conv/Linear layer (a bare ``nn.Linear``
given as the network). torch.fx always traces the root's own forward, so its work is a
function call on the root's parameters (``F.linear(x, weight, bias)``, ``torch.conv1d(x,
weight, ...)``), not a call of a layer. That call is recorded as the layer at the root's
path ``""`` by the rules of :mod:`.producers`, so the costs count it (a ``Linear(32, 2)``:
66 params); its input and output are the graph's, kept whole, so nothing of it is
searched. Any other functional linear or convolution (on tensors that are not the root's
own ``weight``) is not understood: its inputs are kept whole and it is reported."""

from __future__ import annotations

from torch import fx, nn

from ..channel_layout import Layout
from ..context import Analysis
from ..ops import module_op
from ..registry import function_rule
from .producers import conv, linear

ROOT = ""  # the root module's path in ``named_modules()``


@function_rule("linear", "conv1d", "conv2d", "conv3d")
def root_layer(an: Analysis, node: fx.Node, name: str, src: Layout | None) -> Layout | None:
    """``F.linear`` / ``conv<d>d`` reading the root's own ``weight`` while the root is a
    Linear / ``<d>``-dimensional Conv: the root layer's call (shapes as its module rule)."""
    root = an.modules[ROOT]
    weight = node.args[1] if len(node.args) > 1 else node.kwargs.get("weight")
    own = isinstance(weight, fx.Node) and weight.op == "get_attr" and weight.target == "weight"
    if own and name == "linear" and module_op(root) == "linear":
        return linear(an, node, root, src, target=ROOT)
    dims = len(root.kernel_size) if isinstance(root, nn.modules.conv._ConvNd) else 0
    if own and module_op(root) == "conv" and name == f"conv{dims}d":
        return conv(an, node, root, src, target=ROOT)
    return an.unknown_function(node, name)
