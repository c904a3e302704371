"""The int8 flow checked against independent truth: hand-computed quantisation of a tiny
layer read back from the ONNX file, onnxruntime against the fake-quantised PyTorch
network, and the bad inputs (a layer kept float, an untraceable network, int4)."""

from __future__ import annotations

import warnings

import onnx
import pytest
import torch
from onnx import numpy_helper
from torch import nn

from lightning_dnas.quantize import (
    QuantizationError,
    check_quantize,
    export_int8_onnx,
    prepare_qat,
    to_int8,
)
from lightning_dnas.quantize.onnx_qdq import run_onnx
from lightning_dnas.stages import Stage, parse_stages
from tests.callback.modules import TinyTCN


def _initializers(path) -> dict[str, torch.Tensor]:
    graph = onnx.load(str(path)).graph
    return {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in graph.initializer}


def test_a_linear_layer_is_quantised_as_computed_by_hand(tmp_path):
    net = nn.Sequential(nn.Linear(3, 2))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[0.4, -1.0, 0.25], [2.0, 0.1, -0.3]]))
        net[0].bias.copy_(torch.tensor([0.1, -0.2]))
    x = torch.tensor([[-1.0, 0.0, 3.0]])
    qat = prepare_qat(net, x).eval()
    report = export_int8_onnx(qat, x, tmp_path / "lin.onnx")
    inits = _initializers(tmp_path / "lin.onnx")
    # per-channel symmetric: scale = max|w| / 127, q = round(w / scale)
    w = inits["0.weight_int8"]
    assert w.dtype == torch.int8
    assert w.tolist() == [[51, -127, 32], [127, 6, -19]]
    graph = onnx.load(str(tmp_path / "lin.onnx")).graph
    dq_w = next(n for n in graph.node if n.op_type == "DequantizeLinear"
                and n.input[0] == "0.weight_int8")
    assert torch.allclose(inits[dq_w.input[1]], torch.tensor([1 / 127, 2 / 127]))
    # input: per-tensor asymmetric over [-1, 3]: scale 4/255, zero point -128 + 64
    q_in = next(n for n in graph.node if n.op_type == "QuantizeLinear")
    assert float(inits[q_in.input[1]]) == pytest.approx(4 / 255)
    assert int(inits[q_in.input[2]]) == -64
    # bias: int32 at input scale * weight scale
    b = inits["0.bias_int32"]
    assert b.dtype == torch.int32
    assert b.tolist() == [round(0.1 / (4 / 255 / 127)), round(-0.2 / (4 / 255 * 2 / 127))]
    assert report.int8_weights == 1 and report.float_weights == []
    assert report.flash == 6 + 2 * 4  # 6 int8 weights, 2 int32 biases


def _trained_tcn() -> tuple[nn.Module, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(256, 1, 16, generator=gen)
    y = (x.mean(-1).squeeze(1) > 0).long() + (x[:, 0, :8].std(-1) > 1).long()
    torch.manual_seed(0)
    qat = prepare_qat(TinyTCN(channels=8), x[:4])
    opt = torch.optim.Adam(qat.parameters(), lr=1e-2)
    for _ in range(30):
        loss = nn.functional.cross_entropy(qat(x), y)
        opt.zero_grad(), loss.backward(), opt.step()
    return qat.eval(), x


def test_onnxruntime_agrees_with_the_fake_quantised_network(tmp_path):
    qat, x = _trained_tcn()
    report = export_int8_onnx(qat, x[:4], tmp_path / "tcn.onnx")
    with torch.no_grad():
        want = qat(x)
        int8_torch = to_int8(qat)(x)
    got = run_onnx(tmp_path / "tcn.onnx", x)
    assert (got.argmax(-1) == want.argmax(-1)).float().mean() >= 0.99
    output = next(n for n in qat.graph.graph.nodes if n.op == "output").args[0]
    step = float(qat.graph.get_submodule(output.target).scale)  # the output's quantum
    assert float((got - want).abs().max()) <= 3 * step
    assert float((int8_torch - want).abs().max()) <= 3 * step
    assert report.int8_weights == 3 and report.float_weights == []
    # BN was folded: no BatchNormalization node in the file
    assert "BatchNormalization" not in {n.op_type for n in onnx.load(str(report.path)).graph.node}


def test_training_moves_the_ranges_evaluation_does_not():
    qat, x = _trained_tcn()
    fq = qat.graph.activation_post_process_1
    before = fq.scale.clone()
    with torch.no_grad():
        qat(x * 10)  # eval: observers off
    assert torch.equal(fq.scale, before)
    qat.train()
    with torch.no_grad():
        qat(x * 10)
    assert not torch.equal(fq.scale, before)


def _observers_on(qat) -> set[bool]:
    return {bool(m.observer_enabled.item()) for m in qat.modules()
            if hasattr(m, "observer_enabled")}  # fmt: skip


def test_the_observers_follow_a_training_flag_set_without_train():
    # What Lightning does after a validation loop: eval(), then each module's `training`
    # flag set back directly (lightning.pytorch.utilities.model_helpers._ModuleMode).
    qat, x = _trained_tcn()
    qat.train()
    flags = {name: m.training for name, m in qat.named_modules()}
    qat.eval()
    for name, m in qat.named_modules():
        m.training = flags[name]
    assert _observers_on(qat) == {False}  # nothing has run yet
    fq = qat.graph.activation_post_process_1
    before = fq.scale.clone()
    with torch.no_grad():
        qat(x * 10)
    assert _observers_on(qat) == {True}
    assert not torch.equal(fq.scale, before)  # the ranges moved: the observers ran
    for m in qat.modules():  # and the other way round: eval by flags only
        m.training = False
    frozen = fq.scale.clone()
    with torch.no_grad():
        qat(x * 100)
    assert _observers_on(qat) == {False}
    assert torch.equal(fq.scale, frozen)


def test_a_loaded_state_dict_does_not_leave_the_switches_stale():
    qat, x = _trained_tcn()
    qat.eval()
    off = {k: v.clone() for k, v in qat.state_dict().items()}  # observers off
    qat.train()
    with torch.no_grad():
        qat(x)
    qat.load_state_dict(off)  # training mode, but the loaded switches are off
    assert _observers_on(qat) == {False}
    with torch.no_grad():
        qat(x)
    assert _observers_on(qat) == {True}


class _WithLayerNorm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.norm = nn.LayerNorm(4)
        self.out = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.norm(self.fc(x)))


def test_a_layer_kept_in_float_is_named_in_a_warning_or_an_error():
    x = torch.randn(4, 4)
    with pytest.warns(UserWarning, match=r"keeps these layers in float: \['norm \(LayerNorm\)'\]"):
        qat = prepare_qat(_WithLayerNorm(), x)
    assert qat.kept_float == ["norm (LayerNorm)"]
    with pytest.raises(QuantizationError, match="norm"):
        prepare_qat(_WithLayerNorm(), x, strict=True)


class _Branchy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) if x.sum() > 0 else -self.fc(x)


def test_an_untraceable_network_is_a_clear_error():
    with pytest.raises(QuantizationError, match="_Branchy: the quantisation flow"):
        prepare_qat(_Branchy(), torch.randn(2, 4))


def test_a_network_without_quantisable_layers_is_refused():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(QuantizationError, match="no Conv/Linear layer"):
            prepare_qat(nn.Sequential(nn.LayerNorm(4)), torch.randn(2, 4))


def test_unsupported_quantisations_list_the_supported_ones():
    listed = r"quantize='int4' is not supported; supported: \['int8'\]"
    with pytest.raises(QuantizationError, match=listed):
        check_quantize("int4")
    assert check_quantize(None) is None and check_quantize("int8") == "int8"
    with pytest.raises(ValueError, match=r"supported: \['int8'\]"):
        parse_stages([Stage("search", 1, "pit"), Stage("finetune", 1, quantize="int4")])
    with pytest.raises(ValueError, match="only a fine-tune"):
        parse_stages([Stage("search", 1, "pit", quantize="int8")])
    with pytest.raises(ValueError, match="must be the last stage"):
        parse_stages([Stage("search", 1, "pit"), Stage("finetune", 1, quantize="int8"),
                      Stage("finetune", 1)])
