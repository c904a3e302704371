"""Shape, size, cost and fx-traceability checks of the MLPerf Tiny seed models."""

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from lightning_dnas.zoo import DSCNN, AutoEncoder, DSCNNThesis, MobileNetV1, ResNet8, TCResNet14
from tests.support import conv_linear_costs


@dataclass(frozen=True)
class Case:
    factory: Callable[[], nn.Module]
    input_shape: tuple[int, ...]  # per sample
    output_shape: tuple[int, ...]  # per sample
    total_params: int  # every parameter, BatchNorm included
    conv_linear_params: int  # conv + linear weights and biases
    macs: int  # conv + linear params (incl. bias) x output spatial positions, per sample


CASES = {
    "resnet8": Case(ResNet8, (3, 32, 32), (10,), 78_058, 77_578, 12_542_602),
    "dscnn": Case(DSCNN, (1, 49, 10), (12,), 23_756, 22_604, 2_728_780),
    "dscnn_thesis": Case(DSCNNThesis, (1, 49, 10), (12,), 40_396, 39_244, 4_808_780),
    "mobilenetv1": Case(MobileNetV1, (3, 96, 96), (2,), 213_586, 208_114, 7_489_666),
    "autoencoder": Case(AutoEncoder, (640,), (640,), 267_928, 265_864, 265_864),
    "tcresnet14": Case(TCResNet14, (10, 49), (12,), 322_363, 320_491, 3_758_683),
}

each_model = pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())


def batch(case: Case, size: int = 2) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(size, *case.input_shape)


@each_model
def test_output_shape(case: Case) -> None:
    model = case.factory()
    assert model(batch(case)).shape == (2, *case.output_shape)


@each_model
def test_total_params(case: Case) -> None:
    model = case.factory()
    assert sum(p.numel() for p in model.parameters()) == case.total_params


@each_model
def test_conv_linear_params_and_macs(case: Case) -> None:
    model = case.factory().eval()
    assert conv_linear_costs(model, batch(case)) == (case.conv_linear_params, case.macs)


@each_model
def test_fx_traceable(case: Case) -> None:
    model = case.factory().eval()
    traced = torch.fx.symbolic_trace(model)
    x = batch(case)
    with torch.no_grad():
        torch.testing.assert_close(traced(x), model(x))


@pytest.mark.parametrize("momentum", [0.1, 0.99])
def test_dscnn_thesis_bn_momentum(momentum: float) -> None:
    model = DSCNNThesis(bn_momentum=momentum)
    momenta = {m.momentum for m in model.modules() if isinstance(m, nn.BatchNorm2d)}
    assert momenta == {momentum}


def test_dscnn_thesis_squeezes_a_batch_of_one() -> None:
    model = DSCNNThesis().eval()
    assert model(torch.randn(1, 1, 49, 10)).shape == (12,)


def test_mobilenetv1_depthwise_convs() -> None:
    convs = [m for m in MobileNetV1().modules() if isinstance(m, nn.Conv2d)]
    depthwise = [c for c in convs if c.groups > 1]
    assert len(convs) == 27
    assert len(depthwise) == 13
    assert all(c.groups == c.in_channels == c.out_channels for c in depthwise)
    assert all(c.bias is None for c in convs)
