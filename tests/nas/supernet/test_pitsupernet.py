"""PITSuperNet: PIT masks inside candidates, shared output masks, argmax + sliced export."""

import json

import pytest
import torch
from torch import nn

from lightning_dnas import PITSuperNet, SuperNet, SuperNetModule, apply_arch
from tests.support import (
    assert_export_matches,
    randomize_masks,
    randomize_norms,
)


def conv_bn(cin: int, cout: int, k: int, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU())  # fmt: skip


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = conv_bn(3, 8, 3)
        self.block = SuperNetModule({
            "conv3x3": conv_bn(8, 8, 3),
            "dw_sep": nn.Sequential(conv_bn(8, 8, 3, groups=8), conv_bn(8, 8, 1)),
            "identity": nn.Identity(),
        })  # fmt: skip
        self.down = SuperNetModule({"conv3x3": conv_bn(8, 12, 3), "conv5x5": conv_bn(8, 12, 5)})
        self.head = nn.Linear(12, 5)

    def forward(self, x):
        return self.head(self.down(self.block(self.stem(x))).mean((2, 3)))


def test_identity_candidate_shares_the_mask_of_the_layer_feeding_the_choice():
    search = PITSuperNet(Net(), torch.randn(2, 3, 6, 6))
    # stem, block.conv3x3, block.dw_sep (depthwise + pointwise) all write one group;
    # down's two candidates write another; the head's output is the graph output.
    assert set(search.channel_masks) == {"stem/0", "down/candidates/conv3x3/0"}
    params = {id(p) for p in search.nas_parameters()}
    alphas = {id(search.net.block.alpha), id(search.net.down.alpha)}
    assert alphas <= params and len(params) == 2 + 2
    assert not params & {id(p) for p in search.net_parameters()}


def test_costs_at_init_equal_the_supernet_expected_cost():
    x = torch.randn(2, 3, 6, 6)
    both = PITSuperNet(Net(), x, cost={"params": "params", "macs": "macs"})
    coarse = SuperNet(Net(), x, cost={"params": "params", "macs": "macs"})
    for name in ("params", "macs"):
        assert both.soft_cost(name).item() == pytest.approx(coarse.soft_cost(name).item())
        assert both.hard_cost(name) == coarse.hard_cost(name)
    block = (8 * 8 * 9 + (8 * 9 + 8 * 8) + 0) / 3
    down = (8 * 12 * 9 + 8 * 12 * 25) / 2
    assert coarse.soft_cost().item() == pytest.approx(3 * 8 * 9 + block + down + 12 * 5 + 5)


@pytest.mark.parametrize("seed", range(4))
def test_export_equals_search_network_and_hard_cost(seed):
    torch.manual_seed(seed)
    x = torch.randn(2, 3, 6, 6)
    model = Net()
    randomize_norms(model, seed)
    search = PITSuperNet(model, x, cost={"params": "params", "macs": "macs"},
                         softmax="hard_gumbel")  # fmt: skip
    randomize_masks(search, seed, 0.0, 1.0)
    search(x).sum().backward()
    exported = assert_export_matches(search, x)
    assert not any(isinstance(m, SuperNetModule) for m in exported.modules())
    spec = json.loads(json.dumps(search.arch()))
    assert set(spec["choices"]) == {"block", "down"}
    fresh = apply_arch(Net(), spec)
    fresh.load_state_dict(exported.state_dict())
    fresh.eval()
    with torch.no_grad():
        assert torch.equal(fresh(x), exported(x))


def test_vectorised_soft_cost_equals_the_per_layer_evaluation():
    from lightning_dnas import CostModel
    from lightning_dnas.nas.cost.models import layer_macs

    search = PITSuperNet(Net(), torch.randn(2, 3, 6, 6),
                         cost={"macs": "macs", "slow": CostModel(lambda s: layer_macs(s))})
    randomize_masks(search, 3, 0.0, 1.0)
    assert search.soft_cost("macs").item() == pytest.approx(search.soft_cost("slow").item())


def test_soft_cost_gradient_reaches_alphas_and_masks():
    search = PITSuperNet(Net(), torch.randn(2, 3, 6, 6), cost="macs")
    search.soft_cost().backward()
    assert search.net.block.alpha.grad.abs().sum() > 0
    assert all(p.grad is not None for p in search.channel_masks.parameters())


class Temporal(nn.Module):
    """Conv1d candidates (PIT tap masks inside them) behind a stem."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv1d(1, 8, 3, padding=1)
        self.choice = SuperNetModule({
            "wide": nn.Sequential(nn.Conv1d(8, 6, 5, padding=2), nn.BatchNorm1d(6), nn.ReLU(),
                                  nn.Conv1d(6, 8, 3, padding=1)),
            "narrow": nn.Sequential(nn.Conv1d(8, 5, 3, padding=1), nn.ReLU(),
                                    nn.Conv1d(5, 8, 3, padding=1)),
        })  # fmt: skip
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(self.choice(self.stem(x)).mean(-1))


def full_computation_copy(search: nn.Module) -> nn.Module:
    """A deep copy of ``search`` whose choices run every candidate under autograd and sum
    ``theta_i * y_i`` (the computation the hard-mode fast path must reproduce)."""
    import copy
    import types

    from lightning_dnas.nas.supernet import supernet_modules

    def every_candidate(self, inp):
        theta = self.theta()
        return sum(t * m(inp) for t, m in zip(theta, self.candidates.values(), strict=True))

    full = copy.deepcopy(search)
    for module in supernet_modules(full):
        module.forward = types.MethodType(every_candidate, module)
    return full


def assert_same_gradients(fast: nn.Module, full: nn.Module) -> None:
    """Every parameter's gradient (zeros, not None, where the full computation gives zeros)."""
    for (name, p_fast), (_, p_full) in zip(fast.named_parameters(), full.named_parameters(),
                                           strict=True):
        assert p_fast.grad is not None, f"{name}: None, the full computation gives zeros"
        torch.testing.assert_close(p_fast.grad, p_full.grad, atol=1e-7, rtol=1e-6, msg=name)


@pytest.mark.parametrize("selected", ["wide", "narrow"])
def test_hard_fast_path_gradients_of_masks_inside_candidates_equal_full_computation(selected):
    torch.manual_seed(0)
    x = torch.randn(4, 1, 16)
    fast = PITSuperNet(Temporal(), x, softmax="hard_softmax")
    with torch.no_grad():
        fast.net.choice.alpha.copy_(torch.tensor([1.0, 0.0] if selected == "wide" else [0.0, 1.0]))
    full = full_computation_copy(fast)
    fast(x).square().mean().backward()
    full(x).square().mean().backward()
    assert_same_gradients(fast, full)
    other = "narrow" if selected == "wide" else "wide"
    taps = [p for n, p in fast.tap_masks.named_parameters() if f"candidates/{other}" in n]
    assert taps and all(not p.grad.any() for p in taps)


@pytest.mark.parametrize("channels_last_unselected", [True, False])
def test_hard_fast_path_2d_masked_candidates_in_channels_last_equal_full_computation(
    channels_last_unselected,
):
    """PIT-converted 2-D candidates stay layout-free, so the fast path runs the unselected
    ones in channels_last; gradients (masks inside candidates too) and BatchNorm statistics
    still equal the full computation."""
    from lightning_dnas.nas.supernet import supernet_modules
    from lightning_dnas.nas.supernet.memory_format import is_layout_free

    torch.manual_seed(0)
    x = torch.randn(4, 3, 6, 6)
    fast = PITSuperNet(Net(), x, softmax="hard_softmax")
    randomize_masks(fast, seed=1)
    with torch.no_grad():  # block: conv3x3 selected; down: conv3x3 selected
        fast.net.block.alpha.copy_(torch.tensor([1.0, 0.0, 0.0]))
        fast.net.down.alpha.copy_(torch.tensor([1.0, 0.0]))
    for module in supernet_modules(fast):
        module.channels_last_unselected = channels_last_unselected
        assert all(is_layout_free(c) for c in module.candidates.values())
    full = full_computation_copy(fast)
    fast(x).square().mean().backward()
    full(x).square().mean().backward()
    assert_same_gradients(fast, full)
    for (name, b_fast), (_, b_full) in zip(fast.named_buffers(), full.named_buffers(),
                                           strict=True):
        torch.testing.assert_close(b_fast, b_full, atol=1e-7, rtol=1e-6, msg=name)
