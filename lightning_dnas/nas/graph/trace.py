"""torch.fx tracing with user blocks inlined and shape propagation on an example input.

A caller may pass *expanders* for module types that must be traced in a custom way (a
module holding alternative candidates, traced through each and joined with
:func:`.ops.join`): the tracer knows no such type itself.
"""

from __future__ import annotations

import copy
import os
import traceback
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import TensorMetadata

_TORCH_DIR = os.path.dirname(torch.__file__) + os.sep


class UnsupportedModelError(RuntimeError):
    """The network cannot be traced by torch.fx; the message names the module and construct."""


# ``expander(tracer, module, name, args, kwargs)``: the traced output of a call of
# ``module`` (dotted path ``name``); it may trace submodules with ``tracer.call_module``.
Expander = Callable[["PathTracer", nn.Module, str, Any, Any], Any]


class PathTracer(fx.Tracer):
    """fx tracer that keeps torch.nn layers (and extra leaf types / names) as leaves and
    remembers which module it was inside, so that a tracing failure can name it.

    A module whose type (or a base of it) is a key of ``expanders`` is traced by that
    expander instead, whatever the leaf rules say.
    """

    def __init__(
        self, leaf_types: tuple[type, ...] = (), leaf_names: frozenset[str] = frozenset(),
        expanders: Mapping[type, Expander] | None = None,
    ) -> None:  # fmt: skip
        # The defaults let torch.fx rebuild a GraphModule traced by this class when it is
        # unpickled: it re-traces with a subclass constructed without arguments.
        super().__init__()
        self._leaf_types = leaf_types
        self._leaf_names = leaf_names
        self._expanders = dict(expanders or {})
        self.path: list[str] = []

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if isinstance(m, self._leaf_types) or module_qualified_name in self._leaf_names:
            return True
        if type(m) is not nn.Linear and isinstance(m, nn.Linear) and plain_linear(m):
            return True  # timm's Linear: a layer like nn.Linear, searched as one
        return super().is_leaf_module(m, module_qualified_name)

    def _expander(self, m: nn.Module) -> Expander | None:
        for cls in type(m).__mro__:
            if cls in self._expanders:
                return self._expanders[cls]
        return None

    def call_module(self, m: nn.Module, forward: Any, args: Any, kwargs: Any) -> Any:
        name = self.path_of_module(m)
        self.path.append(name)
        expander = self._expander(m)
        if expander is not None:
            out = expander(self, m, name, args, kwargs)
        else:
            out = super().call_module(m, forward, args, kwargs)
        self.path.pop()
        return out


def plain_linear(module: nn.Linear) -> bool:
    """Whether the forward of ``module``, of an ``nn.Linear`` subclass, computes exactly
    ``F.linear(input, self.weight, self.bias)`` (timm's ``Linear``, whose other branch runs
    only under TorchScript): traced alone, its graph is that one call on its own tensors.
    Such a module is kept as a leaf, a Linear layer (searched, exported as ``nn.Linear``);
    any other subclass is traced through."""
    try:
        graph = fx.symbolic_trace(module).graph
    except Exception:  # untraceable alone: traced through, where the failure is named
        return False
    calls = [n for n in graph.nodes if n.op not in ("placeholder", "output", "get_attr")]
    inputs = [n for n in graph.nodes if n.op == "placeholder"]
    if len(calls) != 1 or len(inputs) != 1 or calls[0].target is not nn.functional.linear:
        return False
    args = list(calls[0].args) + [calls[0].kwargs.get("bias")] * (3 - len(calls[0].args))
    reads = [a.target if isinstance(a, fx.Node) and a.op == "get_attr" else a for a in args[1:]]
    return args[0] is inputs[0] and reads == ["weight", "bias"]


def trace(
    model: nn.Module,
    leaf_types: Iterable[type] = (),
    leaf_names: Iterable[str] = (),
    expanders: Mapping[type, Expander] | None = None,
) -> fx.GraphModule:
    """Trace ``model`` into a GraphModule whose call_module targets are the model's own
    torch.nn layers (the GraphModule shares them with ``model``; call_module targets are
    the layers' dotted paths in ``model``). ``expanders`` maps module types to the
    function tracing their calls (see :data:`Expander`).

    Raises :class:`UnsupportedModelError` naming the innermost module being traced and the
    Python construct fx rejected; ``model`` itself is never modified.
    """
    tracer = PathTracer(tuple(leaf_types), frozenset(leaf_names), expanders or {})
    try:
        graph = tracer.trace(model)
    except Exception as err:  # fx raises TraceError, TypeError, NotImplementedError...
        where = tracer.path[-1] if tracer.path and tracer.path[-1] else None
        kind = type(model).__name__
        failed = f"{type(err).__name__}: {err}{_failing_line(err)}"
        if where is None:  # the network's own forward: no module to make a leaf
            raise UnsupportedModelError(
                f"torch.fx cannot trace {kind}: its own forward failed with {failed}. "
                f"Make {kind}.forward traceable (no Python branch or loop on a tensor's value, "
                "no tensor converted to a Python number, no new tensor sized by a shape read "
                "from an input), or move the untraceable code into a submodule and list it in "
                "leaf_modules= (kept whole, not searched), or search "
                "a traceable part of the network on its own (DNASCallback(network='<attribute>'))"
            ) from err
        raise UnsupportedModelError(
            f"torch.fx cannot trace {kind}: inside `{where}` the construct failed with "
            f"{failed}. Make that module a leaf, traced as one opaque call "
            f"and kept whole: leaf_modules=['{where}'] (or its type, or a wrapper module listed "
            f"there). exclude= alone only stops searching a layer: the module must still trace."
        ) from err
    return fx.GraphModule(tracer.root, graph, type(model).__name__)


def _failing_line(err: BaseException) -> str:
    """`` at <file>:<line>: <source>``: the last frame of the failure outside torch (the
    user's line that fx rejected, e.g. ``torch.ones(n, n)`` with ``n`` read from a shape),
    or "" when every frame is torch's."""
    frames = [f for f in traceback.extract_tb(err.__traceback__)
              if not f.filename.startswith(_TORCH_DIR)]  # fmt: skip
    if not frames:
        return ""
    last = frames[-1]
    return f" at {last.filename}:{last.lineno}: `{(last.line or '').strip()}`"


def as_tuple(example_input: Any) -> tuple[Any, ...]:
    """Positional inputs of the network: a tuple/list is unpacked, anything else is one input."""
    if isinstance(example_input, (tuple, list)):
        return tuple(example_input)
    return (example_input,)


class _ShapeRecorder(fx.Interpreter):
    """Runs a GraphModule and records each tensor result's shape and dtype, and the shapes of
    the pieces of a tuple of tensors. (torch.fx's own
    ShapeProp also checks memory formats through ``torch._check``, which imports sympy:
    ~0.27 s on the first conversion of a process, for nothing the analysis uses.)"""

    def run_node(self, n: fx.Node) -> Any:
        result = super().run_node(n)
        if isinstance(result, torch.Tensor):
            n.meta["tensor_meta"] = TensorMetadata(
                result.shape, result.dtype, result.requires_grad, result.stride(), None,
                result.is_quantized, {},
            )  # fmt: skip
        elif (
            isinstance(result, (tuple, list))
            and result
            and all(isinstance(t, torch.Tensor) for t in result)
        ):
            n.meta["piece_shapes"] = [tuple(t.shape) for t in result]  # split/chunk pieces
        return result


def propagate_shapes(gm: fx.GraphModule, example_input: Any) -> None:
    """Annotate every node with ``meta['tensor_meta']`` (shape, dtype) by running ``gm`` on
    ``example_input``, on a copy in eval mode without gradients so that BatchNorm running
    statistics and the RNG-free parts of the network are left untouched."""
    probe = copy.deepcopy(gm)
    probe.eval()
    with torch.no_grad():
        _ShapeRecorder(probe).run(*as_tuple(example_input))
    for src, dst in zip(probe.graph.nodes, gm.graph.nodes, strict=True):
        for key in ("tensor_meta", "piece_shapes"):
            if key in src.meta:
                dst.meta[key] = src.meta[key]
