"""Peak RAM and flash of plain networks (SPEC 9): the worked examples, the zoo reference
values, and the torch.fx implementation against the aten-level one (dispatch_peak)."""

import pytest
import torch
from torch import nn

from lightning_dnas.nas.cost.memory import flash, memory_report, peak_ram
from lightning_dnas.zoo import (
    DSCNN,
    AutoEncoder,
    DSCNNThesis,
    Mnist1dTCN,
    MobileNetV1,
    ResNet8,
    TCResNet14,
)
from tests.nas.cost.dispatch_peak import dispatch_peak


class SpecExample(nn.Module):
    """conv(1x40 -> 32x40) -> BN -> ReLU -> conv(32x40 -> 32x40)."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.bn = nn.Conv1d(1, 32, 3, padding=1), nn.BatchNorm1d(32)
        self.relu, self.c2 = nn.ReLU(), nn.Conv1d(32, 32, 3, padding=1)

    def forward(self, x):
        return self.c2(self.relu(self.bn(self.c1(x))))


class SpecCrop(nn.Module):
    """conv1d(1x64 -> 16x68, padding 4) -> ReLU -> y[..., :64]."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.relu = nn.Conv1d(1, 16, 5, padding=4), nn.ReLU()

    def forward(self, x):
        return self.relu(self.conv(x))[..., :64]


def test_spec_example_values():
    x = torch.randn(3, 1, 40)
    peak = peak_ram(SpecExample(), x)
    assert (peak.bytes, peak.target) == (2560, "c2")
    assert dispatch_peak(SpecExample(), x) == 2560
    assert peak_ram(SpecExample(), x, act_bits=4).bytes == 1280
    crop = peak_ram(SpecCrop(), torch.randn(1, 1, 64))
    assert crop.bytes == 2112 and crop.target == "getitem"
    assert dispatch_peak(SpecCrop(), torch.randn(1, 1, 64)) == 2112


ZOO = [  # model, input shape, peak_ram (SPEC 9), flash (SPEC 9), op holding the peak
    (ResNet8, (2, 3, 32, 32), 49152, 80128, "stack1.conv"),
    (DSCNN, (2, 1, 49, 10), 16000, 26720, "blocks.0.depthwise"),
    (MobileNetV1, (1, 3, 96, 96), 55296, 230016, "blocks.0.pointwise.conv"),
    (AutoEncoder, (2, 640), 768, 277568, "hidden.0.linear"),
    (TCResNet14, (2, 10, 49), 19944, 327470, "blocks.5.conv1.conv"),
    (lambda: Mnist1dTCN(dilations=[1, 1, 2, 2]), (2, 1, 40), 3072, 29360, None),
]


@pytest.mark.parametrize(("make", "shape", "peak", "flash_bytes", "op"), ZOO)
def test_zoo_reference_values(make, shape, peak, flash_bytes, op):
    net = make().eval()
    x = torch.randn(*shape)
    found = peak_ram(net, x)
    assert found.bytes == peak
    if op is not None:
        assert found.target == op
    assert dispatch_peak(net, x) == peak
    assert flash(net) == flash_bytes


def test_dscnn_thesis_squeeze_at_batch_one():
    net, x = DSCNNThesis().eval(), torch.randn(4, 1, 49, 10)
    assert peak_ram(net, x).bytes == dispatch_peak(net, x) == 16000


def test_flash_counts_weights_and_per_channel_terms():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8), nn.Flatten(),
                        nn.Linear(8 * 4 * 4, 5))  # fmt: skip
    assert flash(net) == (8 * 27 + 8 * 8) + (5 * 128 + 5 * 8)
    assert flash(net, weight_bits=4) == (108 + 64) + (320 + 40)
    odd = nn.Conv1d(1, 3, 3)  # 9 weights at 4 bits: ceil(4.5) = 5 bytes
    assert flash(odd, weight_bits=4) == 5 + 24


def test_memory_report_of_resnet8():
    r = memory_report(ResNet8(), torch.randn(1, 3, 32, 32))
    assert (r.params, r.macs, r.flash, r.peak_ram) == (77578, 12542602, 80128, 49152)
    assert r.peak_target == "stack1.conv"


class Inplace(nn.Module):
    """In-place forms count as their out-of-place ones: `out += x` is a residual add."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        out = self.relu(self.conv(x))
        out += x
        return out.relu_() * 2.0


def test_inplace_forms_follow_the_out_of_place_rules():
    x = torch.randn(1, 4, 5, 5)
    # conv: 100 + 100; add: x, out, sum = 300; relu_ and *2 in place.
    assert peak_ram(Inplace(), x).bytes == 300
    assert dispatch_peak(Inplace(), x) == 300


class Slices(nn.Module):
    def forward(self, x):
        a, b = torch.chunk(x, 2, dim=1)  # two copies
        y = x[:, :]  # keeps every element: an alias
        return torch.cat([a * b, y.flatten(1).view_as(y)], dim=1)


def test_chunk_copies_and_full_slices_alias():
    x = torch.randn(1, 4, 3)
    # chunk: x 12 + pieces 6 + 6 = 24; mul: x, a, b, a*b = 30; cat: x, a*b, out 18 = 36.
    assert peak_ram(Slices(), x).bytes == 36
    assert dispatch_peak(Slices(), x) == 36
