"""Export slicing: Conv1d time taps keep their offsets (asymmetric padding when needed);
per-channel norms and PReLU are copies of the trained module cut to the kept channels."""

import pytest
import torch
from torch import nn

from lightning_dnas import PIT
from lightning_dnas.nas.pit.export import (
    export_group_norm,
    export_norm,
    export_prelu,
    tap_geometry,
)
from tests.support import max_rel_diff


@pytest.mark.parametrize("padding", [0, 2, 4, "same"])
@pytest.mark.parametrize("k", [3, 5, 6, 9])
def test_conv1d_taps_export_exactly(k, padding):
    torch.manual_seed(k)
    model = nn.Sequential(nn.Conv1d(2, 6, k, padding=padding), nn.ReLU(), nn.Conv1d(6, 3, 1))
    x = torch.randn(2, 2, 20)
    search = PIT(model, x)
    for seed in range(6):
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in search.nas_parameters():
                p.copy_(torch.rand(p.shape, generator=gen) * 0.8)
        exported = search.export()
        with torch.no_grad():
            assert max_rel_diff(search(x), exported(x)) <= 1e-6


def test_tap_geometry():
    conv = nn.Conv1d(1, 1, 5, padding=4)  # causal when the right side is cropped later
    assert tap_geometry(conv, [0, 4]) == (2, 4, (4, 4))
    assert tap_geometry(conv, [2, 3, 4]) == (3, 1, (2, 4))
    assert tap_geometry(nn.Conv1d(1, 1, 5), [3, 4]) == (2, 1, (-3, 0))
    with pytest.raises(ValueError, match="evenly spaced"):
        tap_geometry(conv, [0, 3, 4])
    with pytest.raises(ValueError, match="must include tap 4"):
        tap_geometry(conv, [0, 2])


class NormAct(nn.BatchNorm2d):
    """A BatchNorm subclass with an activation and a constructor of its own (like timm's
    BatchNormAct2d): ``type(norm)(n, eps=...)`` cannot rebuild it."""

    def __init__(self, num_features: int, act: nn.Module, *, eps: float) -> None:
        super().__init__(num_features, eps=eps, momentum=0.3)
        self.act = act
        self.tag = "kept"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(super().forward(x))


KEEP = [0, 2, 3, 6]


def _trained(norm: nn.Module) -> nn.Module:
    """``norm`` with random parameters and running statistics (two training steps)."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in norm.parameters(recurse=False):
            p.copy_(torch.rand(p.shape, generator=gen) + 0.5)
    norm.train()
    for _ in range(2):
        norm(torch.randn(4, 8, 5, 5, generator=gen) * 3 + 1)
    return norm


@pytest.mark.parametrize("make", [
    lambda: nn.BatchNorm2d(8, eps=1e-2, momentum=None),
    lambda: nn.BatchNorm2d(8, affine=False, track_running_stats=True),
    lambda: nn.BatchNorm2d(8, track_running_stats=False),
    lambda: nn.InstanceNorm2d(8, eps=1e-3, affine=True, track_running_stats=True),
    lambda: NormAct(8, nn.SiLU(), eps=1e-3),
    lambda: nn.GroupNorm(8, 8, eps=1e-2),
    lambda: nn.PReLU(8, init=0.1),
], ids=["bn_eps_cma", "bn_no_affine", "bn_no_stats", "instance", "subclass_act", "group",
        "prelu"])  # fmt: skip
def test_norm_export_is_the_trained_module_on_kept_channels(make):
    """In both modes the sliced copy computes the original on the kept channels (and updates
    its running statistics alike); every attribute and the class are kept."""
    norm = _trained(make())
    export = {nn.GroupNorm: export_group_norm, nn.PReLU: export_prelu}.get(type(norm), export_norm)
    new = export(norm, KEEP)
    assert type(new) is type(norm)
    skip = {"_parameters", "_buffers", "_modules", "num_features", "num_channels",
            "num_groups", "num_parameters"}  # fmt: skip
    assert {k: v for k, v in vars(new).items() if k not in skip} == {
        k: v for k, v in vars(norm).items() if k not in skip}
    for name, tensor in norm.named_parameters(recurse=False):
        got = getattr(new, name)
        assert isinstance(got, nn.Parameter) and torch.equal(got, tensor.detach()[KEEP])
    x = torch.randn(3, 8, 4, 4, generator=torch.Generator().manual_seed(1))
    for training in (False, True):
        norm.train(training), new.train(training)
        with torch.no_grad():
            assert torch.allclose(new(x[:, KEEP]), norm(x)[:, KEEP], atol=1e-6)
        for name, buf in norm.named_buffers(recurse=False):
            expected = buf if buf.dim() == 0 else buf[KEEP]
            assert torch.equal(getattr(new, name), expected), name
    if isinstance(norm, NormAct):
        assert isinstance(new.act, nn.SiLU) and new.act is not norm.act and new.tag == "kept"
    if norm.weight is not None:  # a fresh leaf: the trained module gets no gradient
        new.weight.sum().backward()
        assert norm.weight.grad is None


def test_norm_export_keeps_frozen_parameters_frozen():
    norm = nn.BatchNorm2d(8)
    norm.weight.requires_grad_(False)
    new = export_norm(norm, KEEP)
    assert not new.weight.requires_grad and new.bias.requires_grad
    assert export_norm(norm, None).num_features == 8 and new.num_features == 4
