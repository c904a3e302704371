"""DNASCallback(budget=...) lands on zoo networks in one fit (SPEC 8): the combinations the
engine tests (tests/nas/test_budget.py, plain loops) and tests/callback/test_budget.py
(a toy network) leave out: the MNIST-1D default (PIT and the cascade) at 10/25/50% of the
seed, ResNet-8 and DS-CNN, a PITSuperNet search, alternating search and a user CostModel.

Each fit is a few optimizer steps (landing is the controller's and the feasibility step's
job, not the accuracy's); the truth is the exported network measured on its own
(tests/callback/budget_fits.py).
"""

import pytest
import torch

from lightning_dnas import CostModel, cascade_stages
from lightning_dnas.network_group import gather
from lightning_dnas.zoo import DSCNN, Mnist1dSuperNet, Mnist1dTCN, ResNet8
from tests.callback.budget_fits import (
    assert_lands,
    budget_fit,
    floor_to,
    mnist1d_loaders,
    random_loaders,
    seed_cost,
)
from tests.callback.two_part import NAMES, TwoPart

FRACTIONS = [0.1, 0.25, 0.5]
MNIST1D_X = torch.zeros(2, 1, 40)
COSTS = {"params": "params", "macs": "macs"}


@pytest.fixture(autouse=True)
def _seeded() -> None:
    """Seed before the test builds its network: the networks' initial weights, and so
    whether the SuperNet export alone lands, must not depend on the tests run before."""
    torch.manual_seed(0)


def _mnist1d() -> Mnist1dTCN:
    """The application's seed (conf/model/mnist1d.yaml)."""
    return Mnist1dTCN(dilations=[1, 1, 2, 2])


@pytest.mark.parametrize("fraction", FRACTIONS)
def test_mnist1d_default_pit(monkeypatch, fraction):
    budget = floor_to(fraction * seed_cost(_mnist1d(), MNIST1D_X, "params"))
    fit = budget_fit(monkeypatch, _mnist1d(), mnist1d_loaders(), 10, budget={"params": budget},
                     warmup_epochs=1, search_epochs=2)  # fmt: skip
    costs = assert_lands(fit, {"params": budget}, MNIST1D_X)
    assert fit.dnas.history[-1]["costs"]["params"] == costs["params"]


@pytest.mark.parametrize("fraction", FRACTIONS)
def test_mnist1d_default_cascade_binds_the_pit_search(monkeypatch, fraction):
    seed = seed_cost(_mnist1d(), MNIST1D_X, "params")
    budget = floor_to(fraction * seed)
    # No pressure in the SuperNet search (strength 0): it exports near the seed, so the
    # budget is the PIT search's to reach.
    stages = cascade_stages(supernet=1, pit=2, finetune=0, intermediate_finetune=1,
                            supernet_strength=0.0)  # fmt: skip
    net = Mnist1dSuperNet(dilations=[1, 1, 2, 2])
    fit = budget_fit(monkeypatch, net, mnist1d_loaders(), 10, stages=stages,
                     budget={"params": budget})  # fmt: skip
    coarse, final = fit.dnas.history
    assert coarse["costs"]["params"] > budget  # the SuperNet export alone does not land
    costs = assert_lands(fit, {"params": budget}, MNIST1D_X)
    assert final["costs"]["params"] == costs["params"]
    assert not any("seed already meets" in w for w in fit.warned)


@pytest.mark.parametrize("make, shape, classes", [
    (ResNet8, (3, 32, 32), 10), (DSCNN, (1, 49, 10), 12)])  # fmt: skip
@pytest.mark.parametrize("fraction", FRACTIONS)
def test_resnet8_dscnn_params_and_macs(monkeypatch, make, shape, classes, fraction):
    x = torch.zeros(2, *shape)
    seed = make()
    budgets = {"params": floor_to(fraction * seed_cost(seed, x, "params")),
               "macs": floor_to(1.2 * fraction * seed_cost(seed, x, "macs"))}  # fmt: skip
    fit = budget_fit(monkeypatch, make(), random_loaders(shape, classes), classes, cost=COSTS,
                     budget=budgets, search_epochs=2)  # fmt: skip
    assert_lands(fit, budgets, x)


def test_pitsupernet_search(monkeypatch):
    budget = floor_to(0.25 * seed_cost(_mnist1d(), MNIST1D_X, "params"))
    net = Mnist1dSuperNet(dilations=[1, 1, 2, 2])
    fit = budget_fit(monkeypatch, net, mnist1d_loaders(), 10, method="pitsupernet",
                     budget={"params": budget}, search_epochs=2)  # fmt: skip
    assert_lands(fit, {"params": budget}, MNIST1D_X)
    assert fit.final is not None and fit.final.choices  # the search had choices to make


def test_alternating_search(monkeypatch):
    budget = floor_to(0.25 * seed_cost(_mnist1d(), MNIST1D_X, "params"))
    fit = budget_fit(monkeypatch, _mnist1d(), mnist1d_loaders(), 10, search_mode="alternating",
                     budget={"params": budget}, search_epochs=2)  # fmt: skip
    assert_lands(fit, {"params": budget}, MNIST1D_X)
    lam = fit.module.trainer.callback_metrics["dnas/lambda/params_epoch"]
    assert float(lam) > 0  # the alternating steps drove the multiplier


def _weights(s):
    """Conv/linear weights without bias, a user's cost function of LayerShape."""
    return s.out_channels * s.in_channels / s.groups * s.kernel


def _weight_count(net: torch.nn.Module) -> int:
    return sum(m.weight.numel() for m in net.modules()
               if isinstance(m, torch.nn.Conv1d | torch.nn.Linear))  # fmt: skip


def test_user_cost_model(monkeypatch):
    cost = {"weights": CostModel(_weights, per_call=False, name="weights"), "params": "params"}
    budget = floor_to(0.25 * _weight_count(_mnist1d()))
    fit = budget_fit(monkeypatch, _mnist1d(), mnist1d_loaders(), 10, cost=cost,
                     budget={"weights": budget}, search_epochs=2)  # fmt: skip
    assert_lands(fit, {"weights": budget}, MNIST1D_X,
                 measured={"weights": _weight_count(fit.module.net)})


def test_several_networks_land_on_their_combined_cost(monkeypatch):
    """``network=["backbone", "head"]``: the budget is on the two modules together, the
    head's params included (its inputs shrink with the backbone's last channels)."""
    x = torch.zeros(2, 1, 16)
    module = TwoPart()
    seed = seed_cost(gather(module, NAMES), x, "params")
    assert seed == (1 * 8 * 3 + 8) + (8 * 8 * 3 + 8) + (8 * 3 + 3)  # c1, c2, head by hand
    budget = floor_to(0.4 * seed)
    fit = budget_fit(monkeypatch, module, random_loaders((1, 16), 3), 3, network=NAMES,
                     budget={"params": budget}, search_epochs=3)  # fmt: skip
    costs = assert_lands(fit, {"params": budget}, x)  # measured on the group of both
    assert fit.dnas.history[-1]["costs"]["params"] == costs["params"]
    head = module.head
    assert head.in_features == len(fit.dnas.history[-1]["arch"]["modules"]["backbone.c2"]["out"])
    assert costs["params"] == (seed_cost(module.backbone, x, "params") + head.weight.numel()
                               + head.bias.numel())  # fmt: skip
