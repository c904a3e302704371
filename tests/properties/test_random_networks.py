"""Property tests over random networks built from the understood graph patterns.

(a) all masks on = the original function; (b) for random masks the exported network equals
the masked one in eval mode; (c) hard_cost equals the exported network's own count.
"""

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from tests.support import assert_faithful


class ConvBlock(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, bn: bool, bias: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, padding=k // 2, bias=bias)
        self.bn = nn.BatchNorm2d(cout) if bn else nn.Identity()
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class ResBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.a = ConvBlock(c, c, 3, True, False)
        self.b = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c))

    def forward(self, x):
        return torch.relu(self.b(self.a(x)) + x)


class DWSep(nn.Module):
    def __init__(self, cin: int, cout: int, bias: bool, bn: bool) -> None:
        super().__init__()
        self.dw = nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=bias)
        self.bn = nn.BatchNorm2d(cin) if bn else nn.Identity()
        self.pw = ConvBlock(cin, cout, 1, True, False)

    def forward(self, x):
        return self.pw(nn.functional.relu6(self.bn(self.dw(x))))


class CatBlock(nn.Module):
    def __init__(self, cin: int, c1: int, c2: int) -> None:
        super().__init__()
        self.a = ConvBlock(cin, c1, 1, True, False)
        self.b = ConvBlock(cin, c2, 3, False, True)

    def forward(self, x):
        return torch.cat([self.a(x), self.b(x)], dim=1)


class Grouped(nn.Module):
    """1x1 expansion to ``groups * width`` channels, then a grouped 3x3 conv."""

    def __init__(self, cin: int, groups: int, width: int, bias: bool) -> None:
        super().__init__()
        c = groups * width
        self.expand = ConvBlock(cin, c, 1, True, False)
        self.grouped = nn.Conv2d(c, c, 3, padding=1, groups=groups, bias=bias)

    def forward(self, x):
        return torch.relu(self.grouped(self.expand(x)))


class Gate(nn.Module):
    """Squeeze-and-excitation: x * sigmoid(fc(mean(x))), then an affine shift."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.fc = nn.Conv2d(c, c, 1)

    def forward(self, x):
        g = torch.sigmoid(self.fc(x.mean((2, 3), keepdim=True)))
        return x * g * 2.0 + 0.5  # + 0.5 maps pruned zeros to 0.5: must be re-masked


@st.composite
def networks(draw):
    c = draw(st.integers(2, 6))
    cin = c
    layers: list[nn.Module] = [ConvBlock(3, c, 3, draw(st.booleans()), draw(st.booleans()))]
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["conv", "res", "dw", "cat", "gate", "grouped"]))
        if kind == "conv":
            nxt = draw(st.integers(2, 6))
            layers.append(ConvBlock(cin, nxt, draw(st.sampled_from([1, 3])),
                                    draw(st.booleans()), draw(st.booleans())))  # fmt: skip
            cin = nxt
        elif kind == "res":
            layers.append(ResBlock(cin))
        elif kind == "dw":
            nxt = draw(st.integers(2, 6))
            layers.append(DWSep(cin, nxt, draw(st.booleans()), draw(st.booleans())))
            cin = nxt
        elif kind == "cat":
            c1, c2 = draw(st.integers(1, 4)), draw(st.integers(1, 4))
            layers.append(CatBlock(cin, c1, c2))
            cin = c1 + c2
        elif kind == "grouped":
            groups, width = draw(st.integers(2, 3)), draw(st.integers(1, 3))
            layers.append(Grouped(cin, groups, width, draw(st.booleans())))
            cin = groups * width
        else:
            layers.append(Gate(cin))
    if draw(st.booleans()):
        head = nn.Sequential(nn.Flatten(), nn.Linear(cin * 16, 3))
    else:
        head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, 3))
    return nn.Sequential(*layers, head), draw(st.integers(0, 2**16))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(networks())
def test_random_networks_convert_and_export_exactly(case):
    model, seed = case
    torch.manual_seed(seed)
    assert_faithful(model, torch.randn(2, 3, 4, 4), range(seed % 3, seed % 3 + 2))
