"""PLiNIO's export-test networks that cut channels with fixed indices, written anew with
the same shapes: a grouped convolution spelled as two convs on the halves of a conv's
output (PLiNIO's ToyGroupedConv: 16 channels, ``x[:, 0:8]`` and ``x[:, 8:16]``, two 8->4
convs, concatenated, an 8->16 conv), in 1-D and 2-D, and a ResNet1D whose blocks do the
same inside a "same"-padded conv module (``x[:, :c // 2]``, ``x[:, c // 2:]``), with
squeeze-excitation and a 1x1 conv on the identity. Every layer is searched (both halves
of each cut producer, nothing frozen), the export is exact, counts what hard_cost says,
and is rebuilt by apply_arch from the spec's JSON."""

import json
import warnings

import pytest
import torch
from torch import fx, nn

from lightning_dnas import PIT, apply_arch
from tests.support import assert_faithful, randomize_masks


class GroupedPair(nn.Module):
    """conv0 (16 channels), its halves through conv1 / conv2 (8 -> 4 each), concatenated,
    conv3 (8 -> 16)."""

    def __init__(self, dims: int) -> None:
        super().__init__()
        conv = nn.Conv1d if dims == 1 else nn.Conv2d
        self.conv0 = conv(16, 16, 5, padding="same")
        self.conv1 = conv(8, 4, 3, padding="same")
        self.conv2 = conv(8, 4, 3, padding="same")
        self.conv3 = conv(8, 16, 3, padding="same")

    def forward(self, x):
        x0 = torch.relu(self.conv0(x))
        x1 = torch.relu(self.conv1(x0[:, 0:8]))
        x2 = torch.relu(self.conv2(x0[:, 8:16]))
        return self.conv3(torch.cat((x1, x2), dim=1))


@pytest.mark.parametrize("dims, x", [(1, torch.randn(2, 16, 6)), (2, torch.randn(2, 16, 5, 5))])
def test_grouped_pair_searches_both_halves_and_exports_exactly(dims, x):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing frozen
        search = assert_faithful(GroupedPair(dims), x, range(3), train_rf=False)
    # conv0's 16 channels in two searched halves; conv1, conv2 searched; conv3 reaches
    # the graph output (kept whole).
    sizes = {k: m.alpha.numel() for k, m in search.channel_masks.items()}
    assert sizes == {"conv0": 8, "conv0:1": 8, "conv1": 4, "conv2": 4}
    randomize_masks(search, 7)
    spec = json.loads(json.dumps(search.arch()))
    out = spec["modules"]["conv0"]["out"]
    assert spec["modules"]["conv1"]["in"] in ([c for c in out if c < 8], None)
    assert spec["modules"]["conv2"]["in"] in ([c - 8 for c in out if c >= 8], None)
    exported = search.export().eval()
    assert isinstance(exported, fx.GraphModule)  # the network's own forward cuts
    assert [exported.conv1.in_channels, exported.conv2.in_channels] == [
        sum(c < 8 for c in out), sum(c >= 8 for c in out)]
    fresh = apply_arch(GroupedPair(dims), spec).eval()
    fresh.load_state_dict(exported.state_dict())
    with torch.no_grad():
        assert torch.equal(fresh(x), exported(x))


class SamePadConv(nn.Module):
    """A conv with "same" padding (a ConstantPad1d before a valid conv); with
    ``halves`` a 2-group conv spelled as two convs on the input's channel halves."""

    def __init__(self, cin: int, cout: int, k: int, stride: int, halves: bool) -> None:
        super().__init__()
        self.cin, self.halves = cin, halves
        self.pad = nn.ConstantPad1d(((k - 1) // 2, k // 2), 0.0)
        if halves:
            self.left = nn.Conv1d(cin // 2, cout // 2, k, stride)
            self.right = nn.Conv1d(cin // 2, cout // 2, k, stride)
        else:
            self.conv = nn.Conv1d(cin, cout, k, stride)

    def forward(self, x):
        if not self.halves:
            return self.conv(self.pad(x))
        left = self.left(self.pad(x[:, : self.cin // 2]))
        right = self.right(self.pad(x[:, self.cin // 2 :]))
        return torch.cat((left, right), dim=1)


class SqueezeExcite(nn.Module):
    def __init__(self, c: int, hidden: int) -> None:
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(c, hidden, bias=False), nn.ReLU(),
                                nn.Linear(hidden, c, bias=False), nn.Sigmoid())  # fmt: skip

    def forward(self, x):
        return x * self.fc(x.mean(-1)).unsqueeze(-1)


class Block(nn.Module):
    """BN-ReLU-conv(halves)-BN-ReLU-conv(halves)-SE, plus the identity through a 1x1 conv
    (max-pooled when the block downsamples)."""

    def __init__(self, cin: int, cout: int, stride: int, first: bool) -> None:
        super().__init__()
        self.pre = nn.Identity() if first else nn.Sequential(nn.BatchNorm1d(cin), nn.ReLU())
        self.conv1 = SamePadConv(cin, cout, 5, stride, halves=True)
        self.mid = nn.Sequential(nn.BatchNorm1d(cout), nn.ReLU(), nn.Dropout(0.5))
        self.conv2 = SamePadConv(cout, cout, 5, 1, halves=True)
        self.se = SqueezeExcite(cout, 4)
        self.pool = nn.MaxPool1d(stride, ceil_mode=True) if stride > 1 else nn.Identity()
        self.identity = nn.Conv1d(cin, cout, 1)

    def forward(self, x):
        out = self.se(self.conv2(self.mid(self.conv1(self.pre(x)))))
        return out + self.identity(self.pool(x))


class ResNet1D(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(SamePadConv(1, 16, 9, 1, halves=False), nn.BatchNorm1d(16),
                                  nn.ReLU(), nn.MaxPool1d(2))  # fmt: skip
        self.blocks = nn.Sequential(Block(16, 16, 1, True), Block(16, 32, 2, False))
        self.final = nn.Sequential(nn.BatchNorm1d(32), nn.ReLU())
        self.classifier = nn.Linear(32, 2)

    def forward(self, x):
        return self.classifier(self.final(self.blocks(self.stem(x))).mean(-1))


def test_resnet1d_with_halved_convs_is_searched_and_exports_exactly():
    x = torch.randn(2, 1, 40)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing frozen
        search = assert_faithful(ResNet1D(), x, range(3))
    sizes = {k: m.alpha.numel() for k, m in search.channel_masks.items()}
    # The stem's 16 channels are cut in halves by block 0's and block 1's conv1 (they
    # share them through block 0's residual add); each halved conv's output is cut again.
    assert sizes["stem/0/conv"] == 8 and sizes["stem/0/conv:1"] == 8
    for block in ("blocks/0", "blocks/1"):
        for conv in ("conv1", "conv2"):
            assert f"{block}/{conv}/left" in sizes and f"{block}/{conv}/right" in sizes
    assert sum(sizes.values()) == 16 + 2 * 16 + 2 * 32 + 2 * 4  # every searchable channel
    randomize_masks(search, 2)
    spec = json.loads(json.dumps(search.arch()))
    assert {"blocks.0.conv1", "blocks.1.conv2"} <= set(spec["cuts"])
    exported = search.export().eval()
    assert type(exported) is ResNet1D and isinstance(exported.blocks[1].conv2, fx.GraphModule)
    fresh = apply_arch(ResNet1D(), spec).eval()
    fresh.load_state_dict(exported.state_dict())
    with torch.no_grad():
        assert torch.equal(fresh(x), exported(x))
    assert search.hard_cost() < PIT(ResNet1D(), x).hard_cost()
