"""DNASCallback(budget={"peak_ram": X}) lands under X (SPEC 9 costs as budgets, issue 15):
ResNet-8 and DS-CNN on random data, the MNIST-1D default on its data, a peak-RAM budget
together with a params budget, and a flash budget. Truth: the exported network's peak RAM
under a TorchDispatchMode (tests/nas/cost/dispatch_peak.py) and its hook-counted params;
flash recomputed from the exported layers by the SPEC 9 formula.
"""

import math

import pytest
import torch
from torch import nn

from lightning_dnas.zoo import DSCNN, Mnist1dTCN, ResNet8
from tests.callback.budget_fits import (
    assert_lands,
    budget_fit,
    floor_to,
    mnist1d_loaders,
    random_loaders,
    seed_cost,
)

MEMORY = {"params": "params", "peak_ram": "peak_ram", "flash": "flash"}
CASES = {
    "resnet8": (ResNet8, (3, 32, 32), 10),
    "dscnn": (DSCNN, (1, 49, 10), 12),
    "mnist1d": (lambda: Mnist1dTCN(dilations=[1, 1, 2, 2]), (1, 40), 10),
}


def _fit(monkeypatch, key, budget, **kwargs):
    make, shape, classes = CASES[key]
    loaders = mnist1d_loaders() if key == "mnist1d" else random_loaders(shape, classes)
    return budget_fit(monkeypatch, make(), loaders, classes, cost=MEMORY, budget=budget,
                      search_epochs=2, **kwargs)  # fmt: skip


@pytest.mark.parametrize("key", sorted(CASES))
@pytest.mark.parametrize("fraction", [0.3, 0.6])
def test_lands_under_a_peak_ram_budget(monkeypatch, key, fraction):
    make, shape, _ = CASES[key]
    x = torch.zeros(2, *shape)
    budget = {"peak_ram": floor_to(fraction * seed_cost(make(), x, "peak_ram"))}
    fit = _fit(monkeypatch, key, budget)
    costs = assert_lands(fit, budget, x)
    assert fit.dnas.history[-1]["costs"]["peak_ram"] == costs["peak_ram"]


def test_peak_ram_and_params_budgets_together(monkeypatch):
    make, shape, _ = CASES["resnet8"]
    x = torch.zeros(2, *shape)
    seed = make()
    budget = {"peak_ram": floor_to(0.5 * seed_cost(seed, x, "peak_ram")),
              "params": floor_to(0.3 * seed_cost(seed, x, "params"))}  # fmt: skip
    assert_lands(_fit(monkeypatch, "resnet8", budget), budget, x)


def _flash(net: nn.Module) -> int:
    """SPEC 9: ceil(weights * 8 / 8) + 8 * out_channels per conv/linear (bias, scale)."""
    layers = [m for m in net.modules() if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Linear)]
    return sum(math.ceil(m.weight.numel()) + 8 * m.weight.shape[0] for m in layers)


def test_lands_under_a_flash_budget(monkeypatch):
    make, shape, _ = CASES["dscnn"]
    x = torch.zeros(2, *shape)
    budget = {"flash": floor_to(0.3 * _flash(make()))}
    fit = _fit(monkeypatch, "dscnn", budget)
    assert_lands(fit, budget, x, measured={"flash": _flash(fit.module.net)})
