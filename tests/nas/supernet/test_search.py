"""SuperNet search: expected costs (SPEC reference), argmax export, arch round trip."""

import json

import pytest
import torch
from torch import nn

from lightning_dnas import SuperNet, SuperNetModule, apply_arch
from lightning_dnas.zoo import spec_reference_choice
from tests.support import (
    assert_export_matches,
)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 1)
        self.choice = spec_reference_choice()
        self.block = SuperNetModule([
            nn.Sequential(nn.Conv2d(32, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU()),
            nn.Sequential(nn.Conv2d(32, 32, 3, padding=1, groups=32), nn.Conv2d(32, 16, 1),
                          nn.BatchNorm2d(16), nn.ReLU()),
        ])  # fmt: skip
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        y = self.block(self.choice(self.stem(x)))
        return self.head(y.mean((2, 3)))


def test_spec_reference_expected_cost_at_init():
    model = nn.Sequential(spec_reference_choice())
    search = SuperNet(model, torch.randn(1, 32, 64, 64), cost={"params": "params", "macs": "macs"})
    assert search.soft_cost("params").item() == pytest.approx(13_344)
    assert search.soft_cost("macs").item() == pytest.approx(13_344 * 4_096)
    assert search.icv().item() == pytest.approx(62.5)


@pytest.mark.parametrize("mode", ["softmax", "gumbel", "hard_softmax", "hard_gumbel"])
def test_export_keeps_the_argmax_candidates(mode):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 8)
    search = SuperNet(Net(), x, cost={"params": "params", "macs": "macs"}, softmax=mode)
    with torch.no_grad():
        search.net.choice.alpha.copy_(torch.tensor([0.1, 0.2, 0.9, 0.3]))
        search.net.block.alpha.copy_(torch.tensor([0.1, 0.5]))
    search(x).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in search.nas_parameters())
    exported = assert_export_matches(search, x, tol=1e-6)
    assert isinstance(exported.choice, nn.Conv2d) and exported.choice.kernel_size == (5, 5)
    assert not any(isinstance(m, SuperNetModule) for m in exported.modules())
    spec = json.loads(json.dumps(search.arch()))
    assert spec["choices"] == {"choice": {"index": 2, "name": "conv5x5"},
                               "block": {"index": 1, "name": "1"}}
    fresh = apply_arch(Net(), spec)
    fresh.load_state_dict(exported.state_dict())
    fresh.eval()
    with torch.no_grad():
        assert torch.equal(fresh(x), exported(x))


def test_soft_cost_is_the_expected_cost_and_differentiable():
    x = torch.randn(2, 3, 8, 8)
    search = SuperNet(Net(), x)
    with torch.no_grad():
        search.net.choice.alpha.copy_(torch.tensor([2.0, 0.0, 0.0, 0.0]))
    p = torch.softmax(torch.tensor([2.0, 0.0, 0.0, 0.0]), 0)
    outside = 3 * 32 + 32 + 16 * 10 + 10
    block = 0.5 * (32 * 16 * 9 + 16) + 0.5 * (32 * 10 + 32 * 16 + 16)
    choice = p @ torch.tensor([9248.0, 18496.0, 25632.0, 0.0])
    assert search.soft_cost().item() == pytest.approx(outside + block + choice.item(), rel=1e-6)
    search.soft_cost().backward()
    assert search.net.choice.alpha.grad.abs().sum() > 0


def test_sampled_cost_uses_the_last_forward_theta():
    x = torch.randn(2, 3, 8, 8)
    search = SuperNet(Net(), x, softmax="hard_gumbel", sampled_cost=True)
    search(x)
    theta = search.net.choice.last_theta
    chosen = int(theta.argmax())
    costs = [9248.0, 18496.0, 25632.0, 0.0]
    expected_choice = costs[chosen]
    block_costs = [32 * 16 * 9 + 16, 32 * 10 + 32 * 16 + 16]
    block = block_costs[int(search.net.block.last_theta.argmax())]
    expected = 3 * 32 + 32 + 170 + expected_choice + block
    assert search.soft_cost().item() == pytest.approx(expected)


def test_parameter_split_and_errors():
    x = torch.randn(2, 3, 8, 8)
    search = SuperNet(Net(), x)
    nas = {id(p) for p in search.nas_parameters()}
    net = {id(p) for p in search.net_parameters()}
    assert len(nas) == 2 and not nas & net
    assert nas | net == {id(p) for p in search.parameters()}
    assert search.training
    with pytest.raises(ValueError, match="no SuperNetModule"):
        SuperNet(nn.Linear(3, 3), torch.randn(1, 3))
    with pytest.raises(ValueError, match="allowed"):
        SuperNet(Net(), x, softmax="sparsemax")
