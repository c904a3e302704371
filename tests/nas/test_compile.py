"""The search networks under ``torch.compile``: one graph per network and mode (no graph
break, no recompilation per layer or per scheduled temperature), gradients equal to the
eager step's, and the same export as after an eager search.

Compiling is slow on a small CPU, so these tests use the smallest networks and, except
one test that runs the real backend (inductor), the ``aot_eager`` backend: it traces the
same dynamo graph and autograd graph (so guards, graph breaks and recompilations are the
ones inductor would see) without generating code.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import torch
import torch._dynamo
import torch.nn.functional as F
from torch import nn
from torch._dynamo.utils import counters

from lightning_dnas import PIT, PITSuperNet, SuperNet
from tests.callback.modules import TinySuperNet, TinyTCN
from tests.support import randomize_masks, randomize_norms

pytestmark = pytest.mark.compile

X = torch.randn(8, 1, 16, generator=torch.Generator().manual_seed(0))
Y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])


@contextmanager
def compile_counts() -> Iterator[dict[str, int]]:
    """Count, inside the block, the frames dynamo compiled (each recompilation is one) and
    the graph breaks it took; the dict is filled when the block ends."""
    torch._dynamo.reset()
    counters.clear()
    found: dict[str, int] = {}
    try:
        yield found
    finally:
        found["frames"] = counters["frames"]["ok"]
        found["graph_breaks"] = sum(counters["graph_break"].values())
        torch._dynamo.reset()


def step(run: Callable[[torch.Tensor], torch.Tensor], search: nn.Module) -> dict[str, torch.Tensor]:
    """One training step's loss backward (cross-entropy + regulariser); the gradients."""
    search.zero_grad(set_to_none=True)
    loss = F.cross_entropy(run(X), Y) + search.regularizer(1e-3)
    loss.backward()
    return {n: p.grad.clone() for n, p in search.named_parameters() if p.grad is not None}


def assert_close_grads(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    """Every gradient within 1e-5 of its tensor's largest entry. A tensor whose exact
    gradient is zero (a conv bias before a BatchNorm) holds rounding noise only (entries
    near 1e-8): it must be within 1e-6 of the network's largest gradient instead."""
    assert got.keys() == want.keys()
    largest = max(g.abs().max() for g in want.values())
    for name, g in want.items():
        peak = g.abs().max()
        bound = 1e-5 * peak if peak > 1e-5 * largest else 1e-6 * largest
        assert (got[name] - g).abs().max() <= bound, name


def sgd(search: nn.Module) -> None:
    """The same plain SGD update on both copies (alpha changes in place: a cache keyed on
    it must not go stale in the compiled step)."""
    with torch.no_grad():
        for p in search.parameters():
            if p.grad is not None:
                p -= 0.1 * p.grad


def make_pit(seed: int = 0) -> PIT:
    torch.manual_seed(seed)
    net = TinyTCN()
    randomize_norms(net, seed)
    search = PIT(net, X[:1])
    randomize_masks(search, seed, low=0.3, high=1.0)
    return search


def test_inductor_pit_step_is_one_graph_with_eager_gradients_and_export():
    eager = make_pit()
    compiled_search = copy.deepcopy(eager)
    with compile_counts() as counts:
        compiled = torch.compile(compiled_search)
        for _ in range(3):
            assert_close_grads(step(compiled, compiled_search), step(eager, eager))
            sgd(eager), sgd(compiled_search)
        compiled_search.eval(), eager.eval()
        with torch.no_grad():
            torch.testing.assert_close(compiled(X), eager(X), rtol=1e-5, atol=1e-6)
    # One frame for training, one for evaluation; no graph break, nothing per layer.
    assert counts == {"frames": 2, "graph_breaks": 0}
    assert compiled_search.arch() == eager.arch()
    # The same network: the same layers and shapes; the weights differ by the float
    # rounding of three steps whose kernels sum in another order.
    a, b = compiled_search.export(), eager.export()
    got, want = a.state_dict(), b.state_dict()
    assert {k: v.shape for k, v in got.items()} == {k: v.shape for k, v in want.items()}
    for key, value in want.items():
        torch.testing.assert_close(got[key], value, rtol=1e-5, atol=1e-6)


def test_values_an_eager_pass_left_are_not_read_by_the_compiled_step():
    """The bank's values (binarized masks, folded norms) of an eager pass stay in the
    modules; the compiled step neither reads them (stale after the update) nor guards on
    them (a recompilation per eager pass)."""
    eager = make_pit()
    assert eager._bank.norms  # the two BatchNorms are folded by the bank
    twin = copy.deepcopy(eager)
    with compile_counts() as counts:
        compiled = torch.compile(twin, backend="aot_eager")
        for _ in range(3):
            for net in (twin, eager):  # eager: the bank fills its values
                step(net, net)
                sgd(net)
            assert_close_grads(step(compiled, twin), step(eager, eager))
            sgd(twin), sgd(eager)
    assert counts == {"frames": 1, "graph_breaks": 0}


def make_supernet(cls: type, mode: str) -> nn.Module:
    torch.manual_seed(0)
    net = TinySuperNet()
    randomize_norms(net, 0)
    search = cls(net, X[:1], softmax=mode)
    with torch.no_grad():  # a definite argmax (not the first of equal logits)
        for choice in search.choices.values():
            choice.alpha.copy_(torch.tensor([0.1, 0.5, 0.2]))
    return search


@pytest.mark.parametrize("cls", [SuperNet, PITSuperNet], ids=["supernet", "pitsupernet"])
@pytest.mark.parametrize("mode", ["softmax", "hard_softmax"])
def test_supernet_step_compiles_once_per_mode_with_eager_gradients(cls, mode):
    eager = make_supernet(cls, mode)
    compiled_search = copy.deepcopy(eager)
    with compile_counts() as counts:
        compiled = torch.compile(compiled_search, backend="aot_eager")
        for i in range(3):
            # A temperature schedule changes T every epoch: no recompilation for it.
            for s in (eager, compiled_search):
                s.set_temperature(1.0 - 0.2 * i)
            assert_close_grads(step(compiled, compiled_search), step(eager, eager))
            sgd(eager), sgd(compiled_search)
        compiled_search.eval(), eager.eval()
        with torch.no_grad():  # argmax evaluation: only the chosen candidate's output
            torch.testing.assert_close(compiled(X), eager(X), rtol=1e-5, atol=1e-6)
    assert counts == {"frames": 2, "graph_breaks": 0}
    assert compiled_search.arch() == eager.arch()


class Holder(nn.Module):
    """A module holding the network by attribute, as a LightningModule does."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def test_stage_boundary_recompiles_once_not_per_layer():
    search = make_pit()
    holder = Holder(search)
    with compile_counts() as counts:
        compiled = torch.compile(holder, backend="aot_eager")
        for _ in range(2):
            step(compiled, search)
            sgd(search)
        holder.net = search.export()  # new modules and parameters: the next stage
        del search
        for _ in range(2):
            loss = F.cross_entropy(compiled(X), Y)
            loss.backward()
    assert counts == {"frames": 2, "graph_breaks": 0}
