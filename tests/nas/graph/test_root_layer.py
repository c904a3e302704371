"""A network that is itself one layer (a bare ``nn.Linear`` or ``nn.Conv1d``): fx traces
its own forward, a function call on its parameters; that call is the root layer, costed
like any layer (weights + bias, per output position for MACs) and never searched. A
functional linear on other tensors still keeps its inputs whole, as before."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lightning_dnas import PIT


def _weights_and_biases(layer: nn.Module) -> int:
    return sum(p.numel() for p in layer.parameters())


@pytest.mark.parametrize(
    "layer, x, positions",
    [
        (nn.Linear(32, 2), torch.randn(4, 32), 1),
        (nn.Linear(5, 3, bias=False), torch.randn(4, 7, 5), 7),  # one call per position
        (nn.Conv1d(2, 4, 3), torch.randn(4, 2, 10), 8),  # 10 - 3 + 1 output positions
        (nn.Conv2d(3, 6, 3, padding=1, padding_mode="reflect"), torch.randn(2, 3, 5, 5), 25),
        (nn.Conv1d(4, 4, 3, groups=4, bias=False), torch.randn(2, 4, 6), 4),  # depthwise
    ],
)
def test_the_root_layer_is_costed_and_not_searched(layer, x, positions):
    search = PIT(layer, x, cost={"params": "params", "macs": "macs"})
    params = _weights_and_biases(layer)
    assert search.hard_cost("params") == params
    assert search.hard_cost("macs") == params * positions
    assert float(search.soft_cost("params")) == pytest.approx(params)
    assert [r["layer"] for r in search.layer_widths()] == [""]
    assert not list(search.nas_parameters())  # input and output widths are the graph's
    exported = search.export()
    assert type(exported) is type(layer)
    with torch.no_grad():
        assert torch.equal(exported(x), layer(x))


def test_a_linear_root_of_the_bug_report_counts_66_params():
    assert PIT(nn.Linear(32, 2), torch.randn(1, 32)).hard_cost() == 32 * 2 + 2


class Functional(nn.Module):
    """A network whose forward calls ``F.linear`` on its own tensor named ``weight``: the
    root is no layer, so that call is not a layer either (kept whole, reported)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 6, 3)
        self.weight = nn.Parameter(torch.randn(2, 6))

    def forward(self, x):
        return F.linear(self.conv(x).mean(-1), self.weight)


def test_a_functional_linear_that_is_not_the_root_layer_keeps_its_inputs():
    with pytest.warns(UserWarning, match="linear"):
        search = PIT(Functional(), torch.randn(2, 1, 8))
    assert not search.channel_masks
    assert search.hard_cost() == 6 * 3 + 6  # the conv alone: the functional call is no layer
