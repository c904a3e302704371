"""Short budgeted fits of zoo networks with the callback, and the landing check.

The truth a landing is checked against is the exported network measured on its own: its
conv+linear params/MACs counted by forward hooks (``tests.support.conv_linear_costs``) and
its peak RAM under a ``TorchDispatchMode`` (``tests.nas.cost.dispatch_peak``), not the
engine's hard cost. "Lands" (SPEC 8): never over any budget, and the binding one reached to
>= 97%, or, where one channel or tap is coarse against the budget, *maximal*: putting back
any single channel or tap the search state left out overflows a budget.
"""

from __future__ import annotations

import copy
import functools
import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_dnas import DNASCallback
from lightning_dnas.app.modules import ClassificationModule
from lightning_dnas.data import MNIST1DDataModule
from lightning_dnas.nas.budget import BudgetController
from lightning_dnas.nas.budget.repair import _items, _set_tap_start, _tap_start
from lightning_dnas.nas.engine import DNAS
from lightning_dnas.network_group import gather
from tests.nas.cost.dispatch_peak import dispatch_peak
from tests.support import conv_linear_costs

CLOSE = 0.97
Loaders = tuple[DataLoader, DataLoader]


def random_loaders(shape: tuple[int, ...], classes: int, n: int = 32,
                   batch: int = 16) -> Loaders:  # fmt: skip
    """Random inputs and labels (landing, not accuracy): training and validation loaders."""
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(n, *shape, generator=g), torch.randint(classes, (n,),
                                                                              generator=g))
    return DataLoader(data, batch_size=batch, shuffle=True), DataLoader(data, batch_size=batch)


@functools.cache
def mnist1d_loaders(n: int = 200, batch: int = 32) -> Loaders:
    """The application's data (MNIST-1D, ``lightning_dnas.data``), ``n`` samples."""
    dm = MNIST1DDataModule(num_samples=n, batch_size=batch)
    dm.setup()
    return dm.train_dataloader(), dm.val_dataloader()


@dataclass
class Fit:
    """A finished budgeted fit: the module, the callback, the search state right after the
    feasibility step and the warnings. :attr:`net` is the module's exported network."""

    module: L.LightningModule
    dnas: DNASCallback
    final: DNAS | None
    warned: list[str] = field(default_factory=list)

    @property
    def net(self) -> nn.Module:
        """The network in the module where the callback searched it (several modules:
        their group, which computes the module's ``forward``)."""
        return gather(self.module, self.dnas.network)  # type: ignore[arg-type]


def budget_fit(monkeypatch: pytest.MonkeyPatch, net: nn.Module, loaders: Loaders,
               classes: int, **callback: Any) -> Fit:  # fmt: skip
    """``Trainer.fit`` with ``DNASCallback(**callback)`` (``finetune_epochs`` 0 unless given:
    the fit ends with the export), Adam 1e-2 on the weights (``net`` a LightningModule:
    that module, with its own optimizer), arch_lr 1e-2 so that the masks move within a
    few steps. Records a copy of the search network after
    :meth:`BudgetController.finalize` (the state the export is made of)."""
    finals: list[DNAS] = []
    finalize = BudgetController.finalize

    def recording(self: BudgetController) -> dict[str, float]:
        out = finalize(self)
        finals.append(copy.deepcopy(self.search))
        return out

    monkeypatch.setattr(BudgetController, "finalize", recording)
    torch.manual_seed(0)
    module = net if isinstance(net, L.LightningModule) else ClassificationModule(
        net, functools.partial(torch.optim.Adam, lr=1e-2), classes)  # fmt: skip
    callback = {"finetune_epochs": 0, "arch_lr": 1e-2, "export_dir": False, **callback}
    dnas = DNASCallback(**callback)
    trainer = L.Trainer(callbacks=[dnas], logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0)  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(module, *loaders)
    return Fit(module, dnas, finals[-1] if finals else None, [str(w.message) for w in caught])


def exported_costs(net: nn.Module, x: torch.Tensor) -> dict[str, float]:
    """The exported network's params, MACs (hooks) and peak RAM (aten dispatch), measured
    on its own."""
    net = copy.deepcopy(net).eval()
    params, macs = conv_linear_costs(net, x)
    return {"params": params, "macs": macs, "peak_ram": dispatch_peak(net, x[:1])}


def _one_more(search: DNAS) -> list[Callable[[], None]]:
    """For every channel and tap the state leaves out: a function putting it back (the
    state is restored by :func:`_restore`)."""
    adds = []
    for kind, mod, i in _items(search):
        if kind == "channel" and float(mod.theta()[i]) <= 0.5:
            adds.append(functools.partial(mod.alpha.data.__setitem__, i, 0.51))
        elif kind == "taps" and _tap_start(mod) > 0:
            adds.append(lambda mod=mod: _set_tap_start(mod, _tap_start(mod) - 1))
    return adds


def _restore(search: DNAS, saved: list[torch.Tensor]) -> None:
    with torch.no_grad():
        for p, v in zip(search.nas_parameters(), saved, strict=True):
            p.copy_(v)


def assert_lands(fit: Fit, budgets: Mapping[str, float], x: torch.Tensor,
                 measured: Mapping[str, float] | None = None) -> dict[str, float]:  # fmt: skip
    """The landing check of the module docstring; returns the exported costs. ``measured``:
    the exported network's values of costs this module does not measure (a user's)."""
    costs = {**exported_costs(fit.net, x), **(measured or {})}
    for name, budget in budgets.items():
        assert costs[name] <= budget, (name, costs[name], budget)
    assert fit.final is not None, "no feasibility step ran"
    # The recorded state is the exported network: its hard costs equal the measurement.
    for name in budgets:
        assert fit.final.hard_cost(name) == costs[name], name
    fill = max(costs[n] / b for n, b in budgets.items())
    if fill >= CLOSE:
        return costs
    search, saved = fit.final, [p.detach().clone() for p in fit.final.nas_parameters()]
    adds = _one_more(search)
    assert adds, f"fill {fill:.3f} with nothing left out"
    with torch.no_grad():
        for add in adds:
            add()
            over = any(search.hard_cost(n) > b for n, b in budgets.items())
            _restore(search, saved)
            assert over, f"fill {fill:.3f}: a channel or tap left out still fits"
    return costs


def seed_cost(net: nn.Module, x: torch.Tensor, name: str) -> float:
    """``name`` of the seed network, measured as the exported networks are."""
    return exported_costs(net, x)[name]


def floor_to(value: float) -> float:
    """A budget as a user writes it: a whole number."""
    return float(math.floor(value))
