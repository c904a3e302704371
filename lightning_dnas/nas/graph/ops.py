"""The vocabulary of operations: one table, :data:`OPS`, read by the channel analysis (which
rule handles a node) and by the PIT converter (whether pruned, zero channels stay zero).

Each entry maps a canonical op name (``operator.add``, ``x.add_()`` and ``torch.add`` are
all ``"add"``) to an :class:`Op`: its ``kind`` (the rule family that handles it), its
``zero`` behaviour and the module types computing it. Node helpers reading fx nodes
(:func:`op_name`, :func:`module_op`, :func:`shape_of`, ...) live here too.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from torch import fx, nn
from torch.fx.passes.shape_prop import TensorMetadata


@dataclass(frozen=True)
class Op:
    """Properties of one operation.

    ``kind``: the rule family (``"elementwise"``, ``"binary"``, ``"reshape"``, ``"pool"``...).
    ``zero``: when the output is exactly zero on pruned channels: ``"input"`` (where its
    first input is: f(0) = 0, shape ops), ``"inputs"`` (where all tensor inputs are),
    ``"never"``, ``"padding"`` (where the input is and the pad value is 0), ``"sum"``,
    ``"product"``, ``"quotient"`` (binary ops, by operand). ``function``: the name is
    understood as a call_function/call_method; ``modules``: module types computing it,
    matched by exact type when ``exact`` (a subclass may compute anything) else isinstance.
    """

    kind: str
    zero: str
    modules: tuple[type, ...] = ()
    exact: bool = True
    function: bool = True


def _op(kind: str, zero: str, *modules: type, exact: bool = True, function: bool = True) -> Op:
    return Op(kind, zero, tuple(modules), exact, function)


def _many(kind: str, zero: str, names: str) -> dict[str, Op]:
    return {name: Op(kind, zero) for name in names.split()}


_POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
          nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
          nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)  # fmt: skip
_POOL_NAMES = [
    f"{kind}_pool{d}d" for kind in ("max", "avg", "adaptive_avg", "adaptive_max") for d in (1, 2, 3)
]
PAD_TYPES = (
    nn.ZeroPad1d, nn.ZeroPad2d, nn.ZeroPad3d, nn.ConstantPad1d, nn.ConstantPad2d,
    nn.ConstantPad3d, nn.ReflectionPad1d, nn.ReflectionPad2d, nn.ReflectionPad3d,
    nn.ReplicationPad1d, nn.ReplicationPad2d, nn.ReplicationPad3d, nn.CircularPad1d,
    nn.CircularPad2d, nn.CircularPad3d,
)  # fmt: skip
_DROPOUTS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)
_BN, _IN = nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm

OPS: dict[str, Op] = {
    # Elementwise, f(0) = 0: pruned (zero) channels stay zero through them.
    "relu": _op("elementwise", "input", nn.ReLU),
    "relu6": _op("elementwise", "input", nn.ReLU6),
    "leaky_relu": _op("elementwise", "input", nn.LeakyReLU),
    "elu": _op("elementwise", "input", nn.ELU),
    "selu": _op("elementwise", "input", nn.SELU),
    "celu": _op("elementwise", "input", nn.CELU),
    "gelu": _op("elementwise", "input", nn.GELU),
    "silu": _op("elementwise", "input", nn.SiLU),
    "mish": _op("elementwise", "input", nn.Mish),
    "hardswish": _op("elementwise", "input", nn.Hardswish),
    "hardtanh": _op("elementwise", "input", nn.Hardtanh),
    "tanh": _op("elementwise", "input", nn.Tanh),
    "softsign": _op("elementwise", "input", nn.Softsign),
    "tanhshrink": _op("elementwise", "input", nn.Tanhshrink),
    "hardshrink": _op("elementwise", "input", nn.Hardshrink),
    "softshrink": _op("elementwise", "input", nn.Softshrink),
    "dropout": _op("elementwise", "input", *_DROPOUTS),
    "identity": _op("elementwise", "input", nn.Identity),
    **_many(
        "elementwise",
        "input",
        "dropout1d dropout2d dropout3d alpha_dropout "
        "feature_alpha_dropout contiguous clone float to neg abs square detach "
        "stochastic_depth",
    ),
    # Elementwise, f(0) != 0: pruned channels must be re-masked before a mixer.
    "sigmoid": _op("elementwise", "never", nn.Sigmoid),
    "hardsigmoid": _op("elementwise", "never", nn.Hardsigmoid),
    "softplus": _op("elementwise", "never", nn.Softplus),
    **_many("elementwise", "never", "exp cos"),
    # Two operands broadcast against each other.
    "add": Op("binary", "sum"),
    "sub": Op("binary", "sum"),
    "mul": Op("binary", "product"),
    "div": Op("binary", "quotient"),
    "cat": Op("cat", "inputs"),
    # Alternative branches summed, sharing one mask (emitted by a trace hook).
    "join": Op("join", "inputs"),
    **_many("reshape", "input", "view reshape squeeze unsqueeze"),
    "flatten": _op("reshape", "input", nn.Flatten, exact=False),
    **_many("permute", "input", "permute transpose"),
    **_many("reduction", "input", "mean sum amax amin"),
    **{
        name: _op("pool", "input", cls, exact=False)
        for name, cls in zip(_POOL_NAMES, _POOLS, strict=True)
    },
    # Only the modules are understood (F.lp_pool* is not recognised).
    "lp_pool1d": _op("pool", "input", nn.LPPool1d, exact=False, function=False),
    "lp_pool2d": _op("pool", "input", nn.LPPool2d, exact=False, function=False),
    "pad": _op("pad", "padding", *PAD_TYPES, exact=False),
    "getitem": Op("index", "input"),
    "narrow": Op("narrow", "input"),
    # Tuple-valued functions cutting a tensor into pieces along one dim.
    **_many("split", "never", "split chunk tensor_split unbind"),
    # Values read from a tensor's shape, not tensors.
    **_many("size", "input", "size dim getattr numel"),
    # Channel producers and per-channel companions: modules only.
    "conv": _op("conv", "never", nn.Conv1d, nn.Conv2d, nn.Conv3d, exact=False, function=False),
    "linear": _op("linear", "never", nn.Linear, exact=False, function=False),
    # F.batch_norm / F.group_norm are understood inside a BatchNorm / GroupNorm subclass
    # traced through (timm's BatchNormAct2d, GroupNormAct) on that module's own tensors:
    # rules/norms.py.
    "batch_norm": _op("norm", "never", _BN, exact=False),
    "instance_norm": _op("norm", "never", _IN, exact=False, function=False),
    "group_norm": _op("norm", "never", nn.GroupNorm, exact=False),
    "prelu": _op("prelu", "input", nn.PReLU, function=False),
    "layer_norm": _op("layer_norm", "never", nn.LayerNorm),
}

# Other spellings of the same op.
ALIASES = {"truediv": "div", "concat": "cat", "concatenate": "cat", "multiply": "mul",
           "subtract": "sub", "divide": "div", "iadd": "add", "isub": "sub", "imul": "mul",
           "itruediv": "div", "_unsafe_view": "view", "swapaxes": "transpose",
           "swapdims": "transpose"}  # fmt: skip

CONV_TYPES = OPS["conv"].modules
NORM_TYPES = (_BN, _IN)
POOL_TYPES = (*_POOLS, nn.LPPool1d, nn.LPPool2d)
# Modules whose own tensors the export slices: a get_attr of theirs is not a free parameter.
SLICED_TYPES = (*CONV_TYPES, nn.Linear, *NORM_TYPES, nn.GroupNorm, nn.LayerNorm, nn.PReLU)

_BY_MODULE: dict[type, str] = {cls: name for name, op in OPS.items() for cls in op.modules}


def join(*outputs: Any, key: str = "", untracked: str = "", mismatched: str = "") -> Any:
    """Stand-in for alternative branches in analysis graphs: their outputs summed (only
    shape propagation ever runs it). The analysis gives them one shared mask, like a
    residual add; ``key`` names the joined module, ``untracked`` / ``mismatched`` word the
    freeze warnings (an input without tracked channels, inputs of different groups)."""
    out = outputs[0]
    for y in outputs[1:]:
        out = out + y
    return out


# Functions outside torch recognised by qualified name.
FOREIGN_FUNCTIONS = {
    # Scales whole samples by 0 or 1/(1-p): zero-preserving, channels untouched.
    "torchvision.ops.stochastic_depth.stochastic_depth": "stochastic_depth",
    f"{join.__module__}.{join.__name__}": "join",
}


def names(kind: str, *, calls: str = "function") -> list[str]:
    """Op names of ``kind`` understood as function calls (``calls="function"``) or computed
    by a module type (``calls="module"``): what a rule file registers for."""
    if calls == "module":
        return [n for n, op in OPS.items() if op.kind == kind and op.modules]
    return [n for n, op in OPS.items() if op.kind == kind and op.function]


def op_name(node: fx.Node) -> str | None:
    """Canonical name of a call_function/call_method node (``operator.add`` -> ``"add"``,
    ``x.relu_()`` -> ``"relu"``), or None for functions outside torch/operator/builtins."""
    if node.op == "call_method":
        name = str(node.target)
    elif node.op == "call_function":
        module = getattr(node.target, "__module__", None) or ""
        name = getattr(node.target, "__name__", "")
        if f"{module}.{name}" in FOREIGN_FUNCTIONS:
            return FOREIGN_FUNCTIONS[f"{module}.{name}"]
        # Only torch's own namespace: a look-alike name elsewhere (``mylib.relu``) may
        # compute anything, so it must not be read as the torch function.
        if not (module == "torch" or module.startswith("torch.")
                or module in ("_operator", "operator", "builtins")):  # fmt: skip
            return None
    else:
        return None
    if name.endswith("_") and not name.startswith("_"):
        name = name[:-1]
    return ALIASES.get(name, name)


def module_op(module: nn.Module) -> str | None:
    """Op name a module computes (``nn.ReLU`` -> ``"relu"``, any Conv2d -> ``"conv"``), or
    None for a module outside the table (its inputs are then kept whole)."""
    if type(module) is nn.PReLU:
        # One slope for every channel: elementwise and zero-preserving like a leaky ReLU.
        return "leaky_relu" if module.num_parameters == 1 else "prelu"
    for cls in type(module).__mro__:
        name = _BY_MODULE.get(cls)
        if name is not None and (not OPS[name].exact or cls is type(module)):
            return name
    return None


def module_function(module: nn.Module) -> str | None:
    """Elementwise function name of an activation/dropout module (``nn.ReLU`` -> ``"relu"``)."""
    name = module_op(module)
    return name if name is not None and OPS[name].kind == "elementwise" else None


def is_channel_prelu(module: nn.Module) -> bool:
    """A PReLU with one slope per channel: zero-preserving, its slopes sliced on export."""
    return type(module) is nn.PReLU and module.num_parameters > 1


def is_affine_norm(module: nn.Module) -> bool:
    """A norm masked through its affine parameters, ``norm(x) * m`` computed with ``w * m``
    and ``b * m``: BatchNorm, InstanceNorm (statistics per channel) and GroupNorm (searched
    in whole groups: the statistics of a kept group never read a pruned channel)."""
    return isinstance(module, (*NORM_TYPES, nn.GroupNorm))


def calling_module(node: fx.Node) -> str:
    """Dotted name of the innermost module whose forward made ``node`` (a function call
    inside a module traced through), ``""`` at the top level."""
    stack = node.meta.get("nn_module_stack") or {}
    return next(reversed(stack.values()))[0] if stack else ""


def is_namedtuple(target: Any) -> bool:
    """Whether a call_function target builds a namedtuple (a model's structured output)."""
    return isinstance(target, type) and issubclass(target, tuple) and hasattr(target, "_fields")


def shape_of(node: Any) -> tuple[int, ...] | None:
    """Shape recorded by shape propagation, or None for non-tensor values."""
    if not isinstance(node, fx.Node):
        return None
    meta = node.meta.get("tensor_meta")
    if isinstance(meta, TensorMetadata):
        return tuple(meta.shape)
    return None


def nodes_in(arg: Any) -> Iterator[fx.Node]:
    """The nodes inside an argument (nested tuples, lists and dicts)."""
    if isinstance(arg, fx.Node):
        yield arg
    elif isinstance(arg, (tuple, list)):
        for a in arg:
            yield from nodes_in(a)
    elif isinstance(arg, dict):
        for a in arg.values():
            yield from nodes_in(a)


def arg(node: fx.Node, index: int, name: str, default: Any = None) -> Any:
    """Argument ``index`` of ``node``, passed by position or as keyword ``name``."""
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)
