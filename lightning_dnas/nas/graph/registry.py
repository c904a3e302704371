"""Which rule handles which node: filled by the modules of :mod:`.rules` as they load.

A function rule is found by the op name (:func:`.ops.op_name`) and by what its first
argument is: a tensor, a tuple value (split pieces, namedtuple fields) or a value read from
a shape; a module rule by the op name its module computes (:func:`.ops.module_op`); a
node rule by the fx node op (placeholder, output, get_attr).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from torch import fx, nn

from .channel_layout import Layout

if TYPE_CHECKING:
    from .context import Analysis

FunctionRule = Callable[["Analysis", fx.Node, str, Layout | None], Layout | None]
ModuleRule = Callable[["Analysis", fx.Node, nn.Module, Layout | None], Layout | None]
NodeRule = Callable[["Analysis", fx.Node], Layout | None]

FUNCTION_RULES: dict[str, dict[str, FunctionRule]] = {"tensor": {}, "tuple": {}, "size": {}}
MODULE_RULES: dict[str, ModuleRule] = {}
NODE_RULES: dict[str, NodeRule] = {}


def _register(table: dict[str, Any], keys: tuple[str, ...]) -> Callable[[Any], Any]:
    def decorate(rule: Any) -> Any:
        for key in keys:
            if key in table:
                raise ValueError(f"two rules for {key!r}: {table[key]} and {rule}")
            table[key] = rule
        return rule

    return decorate


def function_rule(*names: str, reads: str = "tensor") -> Callable[[FunctionRule], FunctionRule]:
    """Register ``rule(analysis, node, name, src)`` for calls of ``names`` whose first
    argument is a ``reads`` value (``"tensor"``, ``"tuple"`` or ``"size"``); ``src`` is the
    layout of that argument."""
    return _register(FUNCTION_RULES[reads], names)


def module_rule(*names: str) -> Callable[[ModuleRule], ModuleRule]:
    """Register ``rule(analysis, node, module, src)`` for modules computing ``names``."""
    return _register(MODULE_RULES, names)


def node_rule(*ops: str) -> Callable[[NodeRule], NodeRule]:
    """Register ``rule(analysis, node)`` for fx nodes of kind ``ops``."""
    return _register(NODE_RULES, ops)
