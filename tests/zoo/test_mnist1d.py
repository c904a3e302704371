"""The MNIST-1D seed network: output shape, size, causality and fx traceability; its
SuperNet variant: choices and costs."""

import pytest
import torch
from torch import fx, nn

from lightning_dnas import SuperNet
from lightning_dnas.zoo.mnist1d import Mnist1dSuperNet, Mnist1dTCN


def test_output_shape_and_default_size() -> None:
    model = Mnist1dTCN()
    assert model(torch.randn(3, 1, 40)).shape == (3, 10)
    assert sum(p.numel() for p in model.parameters()) == 28_522
    conv_linear = sum(
        p.numel()
        for m in model.modules()
        if isinstance(m, (nn.Conv1d, nn.Linear))
        for p in m.parameters()
    )
    assert conv_linear == 28_266


def test_options() -> None:
    model = Mnist1dTCN(num_classes=4, channels=8, num_layers=2, kernel_size=5, dilations=(1, 2))
    assert model(torch.randn(2, 1, 40)).shape == (2, 4)
    assert [b.conv.dilation[0] for b in model.blocks] == [1, 2]
    assert model.blocks[1].pad.padding == (8, 0)
    with pytest.raises(ValueError):
        Mnist1dTCN(num_layers=2, dilations=(1,))


def test_blocks_are_causal() -> None:
    model = Mnist1dTCN(channels=4, dilations=(1, 2, 4, 8)).eval()
    x = torch.randn(1, 1, 40)
    y = x.clone()
    y[..., 30:] = torch.randn(1, 1, 10)  # change only the future of sample 29
    with torch.no_grad():
        torch.testing.assert_close(model.blocks(x)[..., :30], model.blocks(y)[..., :30])


def test_fx_traceable() -> None:
    model = Mnist1dTCN().eval()
    gm = fx.symbolic_trace(model)
    x = torch.randn(2, 1, 40)
    with torch.no_grad():
        torch.testing.assert_close(gm(x), model(x))


def test_mnist1d_supernet_choices_and_costs_match_a_hand_count() -> None:
    """Three choices of {conv k9, conv k3, identity}; the first candidates give the seed
    (28,266 params, 1,117,770 MACs); at init (uniform choices) the soft params are
    288 + 3 * (9,216 + 3,072 + 0) / 3 + 330 = 12,906."""
    x = torch.randn(2, 1, 40)
    net = Mnist1dSuperNet(dilations=[1, 1, 2, 2])
    search = SuperNet(net, x, cost={"params": "params", "macs": "macs"})
    assert len(search.choices) == 3
    assert all(c.names == ["conv_k9", "conv_k3", "identity"] for c in search.choices.values())
    assert search.hard_cost("params") == 28_266 and search.hard_cost("macs") == 1_117_770
    assert float(search.soft_cost("params").detach()) == pytest.approx(12_906)
    exported = search.export()
    seed = Mnist1dTCN(dilations=[1, 1, 2, 2])
    assert exported.state_dict().keys() == seed.state_dict().keys()
