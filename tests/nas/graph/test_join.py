"""A join node (what a trace hook emits for alternative branches, e.g. a SuperNet choice)
gives its inputs one mask, like a residual add; inputs that cannot share one are frozen
with the wording the hook passed. Tested at the graph layer, without a search method."""

import torch
from torch import nn

from lightning_dnas.nas.graph.analyse import analyse
from lightning_dnas.nas.graph.ops import join
from lightning_dnas.nas.graph.trace import propagate_shapes, trace


class Alternatives(nn.Module):
    def __init__(self, *branches: nn.Module) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x):
        return sum(b(x) for b in self.branches)


class Halves(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(4, 3, 1), nn.Conv2d(4, 3, 1)

    def forward(self, x):
        return torch.cat([self.a(x), self.b(x)], 1)


def trace_branches(tracer, module, name, args, kwargs):
    outs = [tracer.call_module(b, b.forward, args, kwargs) for b in module.branches]
    words = {"untracked": "a branch with untracked channels", "mismatched": "branches differ"}
    return tracer.create_proxy("call_function", join, tuple(outs), {"key": name, **words})


def analysed(*branches: nn.Module):
    model = nn.Sequential(nn.Conv2d(3, 4, 1), Alternatives(*branches), nn.Conv2d(6, 2, 1))
    gm = trace(model, expanders={Alternatives: trace_branches})
    propagate_shapes(gm, torch.randn(1, 3, 5, 5))
    return analyse(gm, model)


def test_join_inputs_share_one_mask():
    cg = analysed(nn.Conv2d(4, 6, 3, padding=1), nn.Conv2d(4, 6, 1))
    assert list(cg.joins) == ["1"]
    outs = [lc.out_layout.segments[0].group for lc in cg.layers if lc.name.startswith("1.")]
    assert len(outs) == 2 and cg.root(outs[0]) == cg.root(outs[1])
    assert not cg.is_frozen(outs[0]) and cg.freeze_events == []


def test_join_of_a_concat_cuts_the_other_branch():
    """conv(6) joined with cat([a(3), b(3)]): the conv's group is cut after 3 channels,
    its halves sharing a's and b's masks (as for ``cat([a, b]) + conv``)."""
    cg = analysed(nn.Conv2d(4, 6, 1), Halves())
    assert cg.freeze_events == []
    out = {lc.name: lc.out_layout.segments for lc in cg.layers}
    assert [s.size for s in out["1.branches.0"]] == [3, 3]
    head, tail = (cg.root(s.group) for s in out["1.branches.0"])
    assert head == cg.root(out["1.branches.1.a"][0].group) != tail
    assert tail == cg.root(out["1.branches.1.b"][0].group)


class Uneven(nn.Module):
    """cat([a(2), b(4)]): a cut after 2 channels falls inside a group of 3 of the grouped
    conv in the other branch."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(4, 2, 1), nn.Conv2d(4, 4, 1)

    def forward(self, x):
        return torch.cat([self.a(x), self.b(x)], 1)


def test_join_of_different_groups_freezes_with_the_hook_wording():
    grouped = nn.Sequential(nn.Conv2d(4, 6, 1), nn.Conv2d(6, 6, 3, padding=1, groups=2))
    cg = analysed(grouped, Uneven())
    # One event per input layout frozen (each carries groups not frozen before).
    assert [reason for reason, _ in cg.freeze_events] == ["`join` (branches differ)"] * 2
