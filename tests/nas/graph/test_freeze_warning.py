"""The converter's freeze warnings: one warning per conversion, listing every frozen place
(each on its own line, in the per-event wording) and the fixes, which work as given."""

from __future__ import annotations

import re
import warnings

import torch
from torch import nn

from lightning_dnas import PIT


def _odd(x: torch.Tensor) -> torch.Tensor:  # not zero-preserving: the converter freezes it
    return x + 1.0


torch.fx.wrap("_odd")


class TwoFrozen(nn.Module):
    """Two separate places that freeze (a and c), one searchable layer between (b)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 1)
        self.b = nn.Conv2d(8, 6, 1)
        self.c = nn.Conv2d(6, 5, 1)
        self.d = nn.Conv2d(5, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.b(torch.sigmoid(self.a(x)) * 0 + _odd(self.a(x)))
        return self.d(_odd(self.c(torch.relu(y))))


def _convert(**options: object) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        PIT(TwoFrozen(), torch.randn(2, 3, 4, 4), **options)
    return [str(w.message) for w in caught if str(w.message).startswith("lightning_dnas")]


def test_one_warning_lists_every_frozen_place_and_the_fix():
    [message] = _convert()
    events = re.findall(r"^  - .* is not searchable; the output channels of (.*) are kept "
                        r"whole$", message, re.M)  # fmt: skip
    assert sorted(events) == ["a", "c"]
    assert "converter={'exclude': ['a', 'c']}" in message
    assert "leaf_modules" in message


def test_the_exclude_it_names_silences_it():
    assert _convert(exclude=["a", "c"]) == []
