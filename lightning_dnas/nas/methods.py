"""The search methods: :class:`PIT`, :class:`SuperNet`, :class:`PITSuperNet` (presets of
the engine :class:`~lightning_dnas.nas.engine.DNAS`) and THE registry of methods.

Every other place that needs the list of methods or a method's converter options (stage
lists, the callback, checkpoint restore, the application, results files) reads
:data:`METHODS`; adding a method is one class here and one registry line.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from torch import nn

from .engine import DNAS
from .selectors import Selector


class PIT(DNAS):
    """PIT search of an unmodified network (SPEC sections 2-4).

    ``PIT(model, example_input, cost="params")`` gives every Conv/Linear output-channel
    group a mask (shared across residual adds, depthwise convs, concatenations, flattens)
    and every stride-1 Conv1d a receptive-field and a dilation mask. The wrapper is in
    training mode after construction.

    Args:
        model: the seed network (deep-copied; the original is left untouched).
        example_input: a tensor (or tuple of tensors) the network accepts, used for tracing
            shapes and to check the exported network.
        cost: ``"params"``, ``"macs"``, ``"macs_no_bias"``, a :class:`CostModel`, a function
            of :class:`LayerShape`, or a ``{name: cost}`` dict of several.
        include: if given, only these layers (names with globs, or types) are searched.
        exclude: layers kept whole (names with globs, or types); still counted in the cost.
            Their own output channels and kernel are not searched; their input channels
            follow their producer.
        train_channels, train_rf, train_dilation: which masks exist.
        leaf_modules: module types or names traced as opaque calls (their channels frozen).
    """

    method = "pit"

    def __init__(
        self,
        model: nn.Module,
        example_input: Any,
        cost: Any = "params",
        include: Selector | Iterable[Selector] | None = None,
        exclude: Selector | Iterable[Selector] | None = None,
        train_channels: bool = True,
        train_rf: bool = True,
        train_dilation: bool = True,
        leaf_modules: Iterable[Selector] = (),
    ) -> None:
        super().__init__(model, example_input, cost, include, exclude, train_channels,
                         train_rf, train_dilation, leaf_modules)  # fmt: skip


class SuperNet(DNAS):
    """Coarse-grained search among the candidates of every :class:`SuperNetModule` of the
    network (SPEC section 5); everything else is kept as it is.

    ``soft_cost = sum(layers outside) + sum_m sum_i p_mi * cost(candidate_mi)`` with
    ``p_m = softmax(alpha_m / T)``; ``hard_cost`` counts the argmax candidates, which is
    what ``export()`` keeps.

    Args:
        model, example_input, cost: as for :class:`PIT`.
        softmax: if given, the mode of every choice (``"softmax"``, ``"gumbel"``,
            ``"hard_softmax"``, ``"hard_gumbel"``); else each keeps its own.
        temperature: if given, the temperature of every choice.
        sampled_cost: cost and ICV from the last forward's theta (the thesis' variant).
    """

    method = "supernet"

    def __init__(
        self,
        model: nn.Module,
        example_input: Any,
        cost: Any = "params",
        softmax: str | None = None,
        temperature: float | None = None,
        sampled_cost: bool = False,
        leaf_modules: Iterable[Selector] = (),
    ) -> None:
        super().__init__(model, example_input, cost, train_channels=False, train_rf=False,
                         train_dilation=False, leaf_modules=leaf_modules, search_choices=True,
                         softmax=softmax, temperature=temperature,
                         sampled_cost=sampled_cost)  # fmt: skip


class PITSuperNet(DNAS):
    """SuperNet choices and PIT masks searched together (SPEC section 1).

    Layers inside the candidates are converted too; all candidates' outputs (and, when a
    choice has an Identity candidate, the layer feeding it) share one output-channel mask.
    A candidate's cost is its current PIT cost, weighted by its choice's probability.

    Args: those of :class:`PIT` and :class:`SuperNet`.
    """

    method = "pitsupernet"

    def __init__(
        self,
        model: nn.Module,
        example_input: Any,
        cost: Any = "params",
        softmax: str | None = None,
        temperature: float | None = None,
        sampled_cost: bool = False,
        include: Selector | Iterable[Selector] | None = None,
        exclude: Selector | Iterable[Selector] | None = None,
        train_channels: bool = True,
        train_rf: bool = True,
        train_dilation: bool = True,
        leaf_modules: Iterable[Selector] = (),
    ) -> None:
        super().__init__(model, example_input, cost, include, exclude, train_channels,
                         train_rf, train_dilation, leaf_modules, search_choices=True,
                         softmax=softmax, temperature=temperature,
                         sampled_cost=sampled_cost)  # fmt: skip


# Constructor arguments that are not converter options: the network and example, the cost
# (the callback's ``cost=``) and the combiner settings (the callback's ``softmax=`` and
# ``temperature=``, which it applies at every stage).
_NOT_CONVERTER_OPTIONS = frozenset(
    {"self", "model", "example_input", "cost", "softmax", "temperature", "sampled_cost"}
)


@dataclass(frozen=True)
class Method:
    """A registered search method: its ``name`` (``cls.method``), the engine preset ``cls``,
    and the ``converter_options`` its constructor takes (read from its signature, never
    copied by hand)."""

    cls: type[DNAS]

    @property
    def name(self) -> str:
        """The method's name in stage lists, configs and checkpoints."""
        return self.cls.method

    @property
    def converter_options(self) -> tuple[str, ...]:
        """Keyword options of the converter (``include``, ``leaf_modules``, ...)."""
        params = inspect.signature(self.cls.__init__).parameters
        return tuple(p for p in params if p not in _NOT_CONVERTER_OPTIONS)

    @property
    def searches_choices(self) -> bool:
        """Whether the method searches SuperNetModule choices (needs them in the network)."""
        return "softmax" in inspect.signature(self.cls.__init__).parameters


METHODS: dict[str, Method] = {cls.method: Method(cls) for cls in (PIT, SuperNet, PITSuperNet)}


def get_method(name: str) -> Method:
    """The registered method ``name``; a ValueError names the valid ones otherwise."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; valid: {list(METHODS)}")
    return METHODS[name]
