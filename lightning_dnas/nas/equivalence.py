"""The export's safety net: the exported network must compute what the search network does."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


def assert_same_function(search: nn.Module, exported: nn.Module, example: tuple[Any, ...]) -> None:
    """Run ``search`` and ``exported`` in eval mode on ``example`` and raise a RuntimeError
    unless every output agrees (max abs difference <= 1e-5 of the output scale): a wrong
    network is never returned silently. Both keep their train/eval mode afterwards."""
    modes = {m: m.training for m in (*search.modules(), *exported.modules())}
    search.eval()
    exported.eval()
    try:
        with torch.no_grad():
            ref = _tensors(search(*example))
            out = _tensors(exported(*example))
    finally:
        for m, training in modes.items():
            m.training = training
    if len(ref) != len(out):
        raise RuntimeError("the exported network returns a different number of outputs")
    for a, b in zip(ref, out, strict=True):
        if a.shape != b.shape:
            raise RuntimeError(f"the exported network's output has shape {tuple(b.shape)}, "
                               f"the search network's {tuple(a.shape)}")  # fmt: skip
        err = float((a - b).abs().max()) if a.numel() else 0.0
        scale = max(float(a.abs().max()), 1.0) if a.numel() else 1.0
        if err > 1e-5 * scale:
            raise RuntimeError(
                f"the exported network differs from the search network (max abs difference "
                f"{err:.3g}); this is a bug in lightning_dnas's conversion: please report it"
            )



def _tensors(out: Any) -> list[Tensor]:
    if isinstance(out, Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _tensors(o)]
    if isinstance(out, dict):
        return [t for o in out.values() for t in _tensors(o)]
    return []
