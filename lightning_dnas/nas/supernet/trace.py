"""How a SuperNetModule is traced for the channel analysis: through each candidate, the
candidates' outputs meeting in one :func:`~lightning_dnas.nas.graph.ops.join` node (named
``choice_mix``) that the analysis treats like a residual add (one shared mask)."""

from __future__ import annotations

from typing import Any

from torch import nn

from ..graph.ops import join
from ..graph.trace import Expander, PathTracer
from .module import SuperNetModule


def trace_candidates(
    tracer: PathTracer, module: nn.Module, name: str, args: Any, kwargs: Any
) -> Any:
    """Trace every candidate of ``module`` on its input (in candidate order) and join
    their outputs: ``choice_mix(*outputs, key=name)``."""
    assert isinstance(module, SuperNetModule)
    outs = [tracer.call_module(c, c.forward, args, kwargs) for c in module.candidates.values()]
    words = {"untracked": "a choice candidate with untracked channels",
             "mismatched": "candidates with different channel groups"}  # fmt: skip
    return tracer.create_proxy("call_function", join, tuple(outs), {"key": name, **words},
                               name="choice_mix")  # fmt: skip


def supernet_tracing(expand_choices: bool) -> tuple[tuple[type, ...], dict[type, Expander]]:
    """Extra leaf types and expanders for :func:`~lightning_dnas.nas.graph.trace.trace`:
    every SuperNetModule traced through its candidates (``expand_choices``), else kept as
    one opaque call (its inputs then kept whole)."""
    if expand_choices:
        return (), {SuperNetModule: trace_candidates}
    return (SuperNetModule,), {}
