"""Properties: on random networks the torch.fx liveness (lightning_dnas) and the aten-level
dispatch record (tests/nas/cost/dispatch_peak.py) give the same peak RAM, and a PIT search
network's hard peak under random masks equals its exported network's."""

import warnings

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from lightning_dnas.nas.cost.memory import memory_report, peak_ram
from lightning_dnas.nas.methods import PIT
from tests.nas.cost.dispatch_peak import dispatch_peak
from tests.support import randomize_masks

BLOCKS = ("conv", "res", "res_iadd", "cat", "chunk", "dw", "se", "crop", "inplace")


class Block(nn.Module):
    def __init__(self, kind: str, c: int) -> None:
        super().__init__()
        self.kind = kind
        self.a = nn.Conv1d(c, c, 3, padding=1, groups=c if kind == "dw" else 1)
        self.bn = nn.BatchNorm1d(c)
        self.b = nn.Conv1d(c, c, 5, padding=4 if kind == "crop" else 2)
        self.relu = nn.ReLU(inplace=kind == "inplace")
        self.gate = nn.Sequential(nn.AdaptiveAvgPool1d(1), nn.Conv1d(c, c, 1), nn.Sigmoid())

    def forward(self, x):
        y = self.relu(self.bn(self.a(x)))
        if self.kind in ("res", "cat", "chunk", "dw", "se"):
            y = self.b(y)
        if self.kind == "res":
            return torch.relu(y + x)
        if self.kind == "res_iadd":
            y += x
            return y.relu_()
        if self.kind == "cat":
            return torch.cat([y, x], dim=1)[:, : x.shape[1]]
        if self.kind == "chunk":
            p, q = torch.chunk(y, 2, dim=1)
            return torch.cat([q * 2.0, p], dim=1)
        if self.kind == "se":
            return y * self.gate(y)
        if self.kind == "crop":
            return self.b(y)[..., : x.shape[-1]]
        return y


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kinds=st.lists(st.sampled_from(BLOCKS), min_size=1, max_size=4),
       c=st.sampled_from([2, 4, 6]), length=st.integers(3, 12))  # fmt: skip
def test_fx_and_dispatch_agree_on_random_networks(kinds, c, length):
    net = nn.Sequential(nn.Conv1d(1, c, 3, padding=1), *[Block(k, c) for k in kinds],
                        nn.Flatten(), nn.Linear(c * length, 3)).eval()  # fmt: skip
    x = torch.randn(2, 1, length)
    assert peak_ram(net, x).bytes == dispatch_peak(net, x)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kinds=st.lists(st.sampled_from(BLOCKS), min_size=1, max_size=3),
       c=st.sampled_from([4, 6]), length=st.integers(6, 12),
       seed=st.integers(0, 2**16))  # fmt: skip
def test_search_hard_peak_equals_the_exported_networks_under_random_masks(kinds, c, length,
                                                                            seed):
    """The search network's hard peak (random channel masks and dropped kernel taps, so
    some exports need a pad in front of a Conv1d) equals the exported network's, measured
    by the aten dispatch record; flash likewise equals the count of the exported layers the
    forward calls (the blocks hold layers some of them never call)."""
    net = nn.Sequential(nn.Conv1d(1, c, 3, padding=1), *[Block(k, c) for k in kinds],
                        nn.Flatten(), nn.Linear(c * length, 3))  # fmt: skip
    x = torch.randn(2, 1, length)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # blocks the converter keeps whole say so
        search = PIT(net, x, cost={"peak_ram": "peak_ram", "flash": "flash"})
    randomize_masks(search, seed=seed)
    exported = search.export()
    assert search.hard_cost("peak_ram") == dispatch_peak(exported, x)
    assert search.hard_cost("flash") == memory_report(exported, x).flash
