"""Room in dynamo's cache for every network of a compiled fit.

A user's ``torch.compile(module)`` caches one compiled entry per network in each compiled
frame that runs it (``training_step``, ``validation_step``, ...): the guards check the
network's structure, so each network a stage boundary swaps in adds one entry.
``torch._dynamo.config.recompile_limit`` caps the entries per frame (8 in torch 2.14);
past it the frame silently runs eagerly. A cascade knows in advance how many networks it
runs (:meth:`~.clock.StageClock.networks`), so the callback raises the cap to that count
before the first step, and says so.
"""

from __future__ import annotations

import torch._dynamo
from lightning.pytorch import LightningModule
from lightning.pytorch.utilities import rank_zero_info

from . import notes, trainer_ops


def make_room(pl_module: LightningModule, networks: int) -> tuple[int, int] | None:
    """When the fit runs ``torch.compile(pl_module)`` and
    ``torch._dynamo.config.recompile_limit`` is below ``networks``, raise it to
    ``networks`` and say so; the ``(old, new)`` limits when it was raised, else ``None``
    (an uncompiled module: nothing changes)."""
    old = int(torch._dynamo.config.recompile_limit)
    if not trainer_ops.compiled(pl_module) or networks <= old:
        return None
    torch._dynamo.config.recompile_limit = networks
    rank_zero_info(notes.recompile_limit_raised(old, networks))
    return old, networks
