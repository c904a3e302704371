"""Layer selectors: module names (``fnmatch`` globs) or module types, as taken by the
``include=``, ``exclude=`` and ``leaf_modules=`` options of the search methods."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence

from torch import nn

Selector = str | type


def matches(name: str, module: nn.Module, selectors: Sequence[Selector]) -> bool:
    """Whether ``module`` (at dotted path ``name``) is of a listed type or matches a glob."""
    for sel in selectors:
        if isinstance(sel, type) and isinstance(module, sel):
            return True
        if isinstance(sel, str) and fnmatch.fnmatchcase(name, sel):
            return True
    return False


def parse_selectors(value: Selector | Iterable[Selector] | None) -> list[Selector]:
    """One selector or several as a list; ``None`` is none. Raises TypeError on anything
    but a string or a type."""
    if value is None:
        return []
    if isinstance(value, (str, type)):
        return [value]
    out = list(value)
    for sel in out:
        if not isinstance(sel, (str, type)):
            raise TypeError(f"include/exclude take module names (globs) or types, got {sel!r}")
    return out
