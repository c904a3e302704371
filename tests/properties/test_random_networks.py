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


class ChunkBlock(nn.Module):
    """A conv's output (optionally concatenated with a second conv's) chunked in ``pieces``
    along channels; the pieces are processed apart and concatenated again (or, for a GLU,
    gate each other)."""

    def __init__(self, cin: int, c1: int, c2: int, pieces: int, glu: bool) -> None:
        super().__init__()
        self.pieces, self.glu = pieces, glu
        self.a = ConvBlock(cin, c1, 1, True, False)
        self.b = nn.Conv2d(cin, c2, 3, padding=1) if c2 else None
        width = (c1 + c2) // pieces
        self.inner = nn.Conv2d(width, width, 1)
        self.out_channels = width if glu else width * pieces

    def forward(self, x):
        y = self.a(x) if self.b is None else torch.cat([self.a(x), self.b(x)], 1)
        parts = y.chunk(self.pieces, dim=1)
        if self.glu:
            return parts[0] * torch.sigmoid(parts[-1])
        rest = [parts[i] for i in range(self.pieces - 1)]  # fx cannot iterate parts[:-1]
        return torch.cat([self.inner(parts[-1]), *rest], dim=1)


class ChannelsLast(nn.Module):
    """permute to channels-last, an MLP on the last dim, permute back, residual."""

    def __init__(self, c: int, hidden: int) -> None:
        super().__init__()
        self.up, self.down = nn.Linear(c, hidden), nn.Linear(hidden, c)

    def forward(self, x):
        y = self.down(nn.functional.gelu(self.up(x.permute(0, 2, 3, 1))))
        return x + y.permute(0, 3, 1, 2)


class ChannelsLastNorm(nn.Module):
    """ConvNeXt-style: depthwise conv, permute, LayerNorm over the channels, MLP, a
    per-channel layer scale (or learnable bias), permute back, residual."""

    def __init__(self, c: int, hidden: int, affine: bool, shift: bool) -> None:
        super().__init__()
        self.shift = shift
        self.dw = nn.Conv2d(c, c, 3, padding=1, groups=c)
        self.norm = nn.LayerNorm(c, elementwise_affine=affine)
        self.up, self.down = nn.Linear(c, hidden), nn.Linear(hidden, c)
        self.gamma = nn.Parameter(torch.rand(c, 1, 1) + 0.5)

    def forward(self, x):
        y = self.norm(self.dw(x).permute(0, 2, 3, 1))
        y = self.down(nn.functional.gelu(self.up(y))).permute(0, 3, 1, 2)
        # + gamma maps pruned zeros to gamma: the next mixing layer must re-mask them
        return x + (y + self.gamma if self.shift else self.gamma * y)


class FixedCut(nn.Module):
    """A conv's output cut at the constant channel ``k`` (``0 < k < width``): a slice, a
    narrow, a split into pieces of ``k``, a tensor_split at ``k``, sizes written in the
    forward (``split(y, [k, width - k])``) or a chunk in two (unequal for an odd width);
    two pieces concatenated back in the other order."""

    def __init__(self, cin: int, width: int, k: int, how: str) -> None:
        super().__init__()
        self.k, self.how = k, how
        self.conv = ConvBlock(cin, width, 1, True, False)
        # split(y, k) gives ceil(width / k) pieces; the first two are read.
        self.out_channels = {"head": k, "tail": width - k, "narrow": k,
                             "split": min(width, 2 * k)}.get(how, width)  # fmt: skip

    def forward(self, x):
        y = self.conv(x)
        if self.how == "head":
            return y[:, : self.k]
        if self.how == "tail":
            return y[:, self.k :]
        if self.how == "narrow":
            return y.narrow(1, 0, self.k)
        if self.how == "split":
            a, b = torch.split(y, self.k, 1)[:2]
        elif self.how == "split_sizes":
            a, b = torch.split(y, [self.k, self.conv.conv.out_channels - self.k], 1)
        elif self.how == "chunk":
            a, b = y.chunk(2, 1)  # even width: tied halves; odd: unequal pieces, cut
        else:
            a, b = y.tensor_split([self.k], 1)
        return torch.cat([b, a * 2.0], 1)


class CatAdd(nn.Module):
    """``cat([a(x), b(x)]) + r(x)``: r's group is cut where a's ends, the pieces tied."""

    def __init__(self, cin: int, c1: int, c2: int) -> None:
        super().__init__()
        self.a = ConvBlock(cin, c1, 1, True, False)
        self.b = ConvBlock(cin, c2, 3, False, True)
        self.r = nn.Conv2d(cin, c1 + c2, 1)

    def forward(self, x):
        return torch.cat([self.a(x), self.b(x)], 1) + self.r(x)


class BatchNormAct(nn.BatchNorm2d):
    """timm's BatchNormAct2d in small: a BatchNorm subclass whose own forward calls
    ``F.batch_norm`` on its tensors, then an activation."""

    def __init__(self, c: int) -> None:
        super().__init__(c)
        self.act = nn.SiLU()

    def forward(self, x):
        y = nn.functional.batch_norm(x, self.running_mean, self.running_var, self.weight,
                                     self.bias, self.training, 0.1, self.eps)  # fmt: skip
        return self.act(y)


class GroupNormAct(nn.GroupNorm):
    """timm's GroupNormAct in small: a GroupNorm subclass whose own forward calls
    ``F.group_norm`` on its tensors and ``num_groups``, then an activation."""

    def __init__(self, groups: int, c: int) -> None:
        super().__init__(groups, c)
        self.act = nn.SiLU()

    def forward(self, x):
        return self.act(nn.functional.group_norm(x, self.num_groups, self.weight, self.bias,
                                                 self.eps))  # fmt: skip


@st.composite
def networks(draw):
    c = draw(st.integers(2, 6))
    cin = c
    layers: list[nn.Module] = [ConvBlock(3, c, 3, draw(st.booleans()), draw(st.booleans()))]
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["conv", "res", "dw", "cat", "gate", "grouped", "chunk",
                                     "channels_last", "layer_norm", "cut", "cat_add",
                                     "norm_act", "group_norm"]))  # fmt: skip
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
        elif kind == "chunk":
            pieces = draw(st.integers(1, 3))
            c1 = draw(st.integers(1, 4))
            c2 = draw(st.integers(0, 4)) if c1 % pieces else 0
            c2 += -(c1 + c2) % pieces  # equal pieces: searched (tied), not frozen
            block = ChunkBlock(cin, c1, c2, pieces, draw(st.booleans()) and pieces > 1)
            layers.append(block)
            cin = block.out_channels
        elif kind == "channels_last":
            layers.append(ChannelsLast(cin, draw(st.integers(2, 6))))
        elif kind == "layer_norm":
            layers.append(ChannelsLastNorm(cin, draw(st.integers(2, 6)), draw(st.booleans()),
                                           draw(st.booleans())))  # fmt: skip
        elif kind == "cut":
            width = draw(st.integers(2, 6))
            how = draw(st.sampled_from(["head", "tail", "narrow", "split", "tensor_split",
                                        "split_sizes", "chunk"]))  # fmt: skip
            block = FixedCut(cin, width, draw(st.integers(1, width - 1)), how)
            layers.append(block)
            cin = block.out_channels
        elif kind == "cat_add":
            c1, c2 = draw(st.integers(1, 3)), draw(st.integers(1, 3))
            layers.append(CatAdd(cin, c1, c2))
            cin = c1 + c2
        elif kind == "norm_act":
            nxt = draw(st.integers(2, 6))
            layers += [nn.Conv2d(cin, nxt, 3, padding=1), BatchNormAct(nxt)]
            cin = nxt
        elif kind == "group_norm":  # on the previous block's channels: may straddle groups
            groups = draw(st.sampled_from([g for g in (1, 2, 3) if cin % g == 0]))
            norm = GroupNormAct if draw(st.booleans()) else nn.GroupNorm
            layers.append(norm(groups, cin))
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
