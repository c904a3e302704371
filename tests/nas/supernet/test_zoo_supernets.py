"""The thesis' SuperNet variants convert for SuperNet and PITSuperNet and export exactly."""

import pytest
import torch

from lightning_dnas import PITSuperNet, SuperNet
from lightning_dnas.zoo import DSCNNSuperNet, MobileNetV1SuperNet, ResNet8SuperNet
from tests.support import (
    assert_export_matches,
    randomize_masks,
    randomize_norms,
)

CASES = {
    "resnet8": (ResNet8SuperNet, (3, 32, 32), 7),
    "dscnn": (DSCNNSuperNet, (1, 49, 10), 4),
    "mobilenetv1": (MobileNetV1SuperNet, (3, 96, 96), 13),
}


@pytest.mark.parametrize("method", [SuperNet, PITSuperNet])
@pytest.mark.parametrize("key", CASES)
def test_zoo_supernet_search_exports_exactly(key, method):
    factory, shape, n_choices = CASES[key]
    torch.manual_seed(0)
    model = factory()
    randomize_norms(model)
    x = torch.randn(2, *shape)
    search = method(model, x, cost={"params": "params", "macs": "macs"})
    assert len(search.choices) == n_choices
    randomize_masks(search, 1, 0.0, 1.0)  # alphas too: random choices
    assert_export_matches(search, x)


def test_dscnn_supernet_expected_cost_at_init_matches_a_hand_count():
    search = SuperNet(DSCNNSuperNet(), torch.randn(2, 1, 49, 10))
    conv3x3, conv5x5 = 64 * 64 * 9 + 64, 64 * 64 * 25 + 64
    dw_sep = (64 * 9 + 64) + (64 * 64 + 64)
    choice = (conv3x3 + conv5x5 + dw_sep + 0) / 4  # uniform p at init, Identity costs 0
    outside = (64 * 10 * 4 + 64) + 4 * (64 * 64 + 64) + (64 * 12 + 12)
    assert search.soft_cost().item() == pytest.approx(outside + 4 * choice)
    assert search.soft_cost().item() == pytest.approx(164_236)
