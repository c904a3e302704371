"""Conv1d time-tap export: kept taps keep their offsets (asymmetric padding when needed)."""

import pytest
import torch
from torch import nn

from lightning_dnas import PIT
from lightning_dnas.nas.pit.export import tap_geometry
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
