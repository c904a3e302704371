"""peak_ram / flash as search costs: the hard value of the search network equals the
exported network's, measured independently (torch.fx rules and the aten-level dispatch
record); the soft value equals it at binary masks / one-hot choices and its gradient
lowers the peak."""

import pytest
import torch
from torch import nn

from lightning_dnas.nas.cost.memory import flash, peak_ram
from lightning_dnas.nas.methods import PIT, PITSuperNet, SuperNet
from lightning_dnas.zoo import (
    DSCNN,
    AutoEncoder,
    DSCNNSuperNet,
    Mnist1dSuperNet,
    Mnist1dTCN,
    MobileNetV1,  # fmt: skip
    ResNet8,
    ResNet8SuperNet,
    TCResNet14,
)
from tests.nas.cost.dispatch_peak import dispatch_peak
from tests.support import randomize_masks

COSTS = {"peak_ram": "peak_ram", "flash": "flash"}
PLAIN = [
    (ResNet8, (2, 3, 32, 32)), (DSCNN, (2, 1, 49, 10)), (MobileNetV1, (1, 3, 96, 96)),
    (AutoEncoder, (2, 640)), (TCResNet14, (2, 10, 49)),
    (lambda: Mnist1dTCN(dilations=[1, 1, 2, 2]), (2, 1, 40)),
]  # fmt: skip


def assert_exact(search, x):
    exported = search.export()
    hard = search.hard_cost("peak_ram")
    assert hard == peak_ram(exported, x).bytes == dispatch_peak(exported, x)
    assert search.hard_cost("flash") == flash(exported)
    return exported


@pytest.mark.parametrize(("make", "shape"), PLAIN)
def test_pit_hard_peak_is_the_exported_networks(make, shape):
    x = torch.randn(*shape)
    search = PIT(make(), x, cost=COSTS)
    assert search.hard_cost("peak_ram") == peak_ram(make(), x).bytes  # all masks on
    for seed in range(3):
        randomize_masks(search, seed=seed)
        assert_exact(search, x)


SUPERNETS = [
    (ResNet8SuperNet, (2, 3, 32, 32)), (DSCNNSuperNet, (2, 1, 49, 10)),
    (Mnist1dSuperNet, (2, 1, 40)),
]  # fmt: skip


@pytest.mark.parametrize(("make", "shape"), SUPERNETS)
@pytest.mark.parametrize("method", [SuperNet, PITSuperNet])
def test_supernet_hard_peak_and_soft_at_one_hot(make, shape, method):
    x = torch.randn(*shape)
    search = method(make(), x, cost=COSTS)
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        with torch.no_grad():
            for choice in search.choices.values():
                choice.alpha.zero_()
                choice.alpha[torch.randint(len(choice.alpha), (1,), generator=gen)] = 100.0
            for mask in search.channel_masks.values():  # binary masks: soft == hard
                mask.alpha.copy_((torch.rand(mask.alpha.shape, generator=gen) > 0.4).float())
        assert_exact(search, x)
        assert float(search.soft_cost("peak_ram").detach()) == pytest.approx(
            search.hard_cost("peak_ram"), rel=1e-5
        )


def test_soft_peak_equals_hard_at_binary_masks_and_init():
    x = torch.randn(2, 3, 32, 32)
    search = PIT(ResNet8(), x, cost="peak_ram")
    assert float(search.soft_cost()) == search.hard_cost() == 49152
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for mask in search.channel_masks.values():
            mask.alpha.copy_((torch.rand(mask.alpha.shape, generator=gen) > 0.5).float())
    assert float(search.soft_cost()) == search.hard_cost()


def test_soft_peak_gradient_lowers_the_peak():
    x = torch.randn(2, 3, 32, 32)
    search = PIT(ResNet8(), x, cost="peak_ram")
    randomize_masks(search, seed=0, low=0.6, high=1.0)  # all kept, soft counts differ
    soft = search.soft_cost()
    soft.backward()
    grads = {k: m.alpha.grad for k, m in search.channel_masks.items()}
    # the peak is stack 1's second conv: the stem group (input and shortcut) and stack1's
    # first conv group are live; the later stacks' groups get no gradient
    assert grads["stem/conv"].abs().sum() > 0
    assert all(g is None or float(g.abs().sum()) == 0 for k, g in grads.items() if "stack3" in k)
    with torch.no_grad():
        for m in search.channel_masks.values():
            if m.alpha.grad is not None:
                m.alpha -= 1e-6 * m.alpha.grad
    assert float(search.soft_cost()) < float(soft)


class Taps(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv1d(2, 8, 5, padding=2)
        self.relu = nn.ReLU()
        self.b = nn.Conv1d(8, 1, 3, padding=1)

    def forward(self, x):
        return self.b(self.relu(self.a(x)))


def test_asymmetric_tap_padding_counts_its_pad_buffer():
    x = torch.randn(2, 2, 30)
    search = PIT(Taps(), x, cost="peak_ram")
    with torch.no_grad():  # keep taps 2, 3, 4 of conv a: padding (0, 2) -> a pad op
        search.tap_masks["a"].beta.copy_(torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0]))
    assert search._taps["a"].kept_taps() == [2, 3, 4]
    exported = search.export()
    assert isinstance(exported.a, nn.Sequential) and isinstance(exported.a[0], nn.ConstantPad1d)
    # pad: input 60 + padded 2x32 = 124; conv a: padded 64 + output 8x30 = 304 (300 without
    # the pad); conv b: 240 + 30
    assert search.hard_cost() == peak_ram(exported, x).bytes == dispatch_peak(exported, x) == 304
    assert float(search.soft_cost().detach()) == 304
