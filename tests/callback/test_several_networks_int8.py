"""``network=["backbone", "head"]`` with ``quantize="int8"``: each part becomes its own
quantisation-aware network at the fine-tune's boundary (the module's ``forward`` still
wires them), each part is written as an int8 ONNX file that onnxruntime runs, and the
final file and the checkpoints rebuild both QAT parts."""

from __future__ import annotations

import lightning as L
import onnx
import pytest
import torch
from torch import nn

from lightning_dnas import load_network, restore
from lightning_dnas.callback import DNASCallback
from lightning_dnas.network_group import MASKS, group_of, part_inputs, prepare_qat_parts
from lightning_dnas.quantize import QATNetwork, QuantizationError
from lightning_dnas.quantize.onnx_qdq import run_onnx

from .modules import fit_with_epoch_checkpoints
from .two_part import NAMES, TwoPart

# Epochs: 0-1 PIT search over both parts, 2-3 quantisation-aware fine-tune.


def _fit(path, ckpt_path=None) -> tuple[TwoPart, DNASCallback]:
    L.seed_everything(5, workers=True)
    module = TwoPart()
    dnas = DNASCallback("pit", network=NAMES, strength=1e-3, search_epochs=2,
                        finetune_epochs=2, quantize="int8", arch_lr=0.05,
                        export_dir=path / "export")  # fmt: skip
    fit_with_epoch_checkpoints(module, dnas, path, 4, ckpt_path)
    return module, dnas


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    path = tmp_path_factory.mktemp("several_int8")
    module, dnas = _fit(path)
    return path, module.eval(), dnas


def _step(qat: QATNetwork) -> float:
    """The quantum of the part's output (its last activation fake quantiser's scale)."""
    output = next(n for n in qat.graph.graph.nodes if n.op == "output").args[0]
    return float(qat.graph.get_submodule(output.target).scale)


def test_each_part_is_quantisation_aware_and_has_its_int8_onnx(fitted):
    path, module, dnas = fitted
    assert isinstance(module.backbone, QATNetwork) and isinstance(module.head, QATNetwork)
    assert MASKS not in module._modules
    kept = dnas.history[0]["arch"]["modules"]["backbone.c2"]["out"]
    assert kept is not None and len(kept) < 8, "the search removed none of the shared channels"
    assert set(dnas.int8) == set(NAMES)
    stage = dnas.stages[-1].name
    for name, weights in (("backbone", 2), ("head", 1)):  # two convs; the classifier
        report = dnas.int8[name]
        assert report.path == path / "export" / f"{stage}.{name}.int8.onnx"
        assert report.int8_weights == weights and report.float_weights == []
        graph = onnx.load(str(report.path)).graph
        inits = {i.name: i.data_type for i in graph.initializer}
        producer = {out: n for n in graph.node for out in n.output}
        layers = [n for n in graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
        assert len(layers) == weights
        for node in layers:  # each weight: an int8 initializer read through DequantizeLinear
            dq = producer[node.input[1]]
            assert dq.op_type == "DequantizeLinear"
            assert inits[dq.input[0]] == onnx.TensorProto.INT8
    # onnxruntime, part by part with the module's own glue (the mean) in between, against
    # the fake-quantised module: each part within 3 of its output quanta.
    x = torch.randn(16, 1, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        features = module.backbone(x)
        want = module(x)
    got_features = run_onnx(dnas.int8["backbone"].path, x)
    assert float((got_features - features).abs().max()) <= 3 * _step(module.backbone)
    got = run_onnx(dnas.int8["head"].path, got_features.mean(-1))
    head_error = float((run_onnx(dnas.int8["head"].path, features.mean(-1)) - want).abs().max())
    assert head_error <= 3 * _step(module.head)
    assert (got.argmax(-1) == want.argmax(-1)).float().mean() >= 0.9


def test_the_final_file_resume_and_restore_rebuild_both_qat_parts(fitted, tmp_path):
    path, module, _ = fitted
    x = torch.randn(4, 1, 16)
    with torch.no_grad():
        want = module(x)
    loaded = load_network(TwoPart(), path / "export" / "final.pt").eval()
    assert isinstance(loaded.backbone, QATNetwork) and isinstance(loaded.head, QATNetwork)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), want, rtol=0, atol=0)
    restored = restore(TwoPart(), path / "epoch=3.ckpt").eval()
    assert isinstance(restored.backbone, QATNetwork) and isinstance(restored.head, QATNetwork)
    have = restored.state_dict()
    for key, value in module.state_dict().items():
        if torch.is_tensor(value):
            assert torch.equal(have[key], value), key
    resumed, _ = _fit(tmp_path, ckpt_path=path / "epoch=2.ckpt")  # inside the QAT stage
    assert isinstance(resumed.backbone, QATNetwork) and isinstance(resumed.head, QATNetwork)
    have = resumed.eval().state_dict()  # the observer switches follow the mode
    for key, value in module.state_dict().items():
        if torch.is_tensor(value):
            assert torch.equal(have[key], value), key
    searching = restore(TwoPart(), path / "epoch=1.ckpt")  # the search, before the QAT stage
    assert MASKS in searching._modules and not isinstance(searching.head, QATNetwork)


class _Pair(nn.Module):
    """A head taking two tensors."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 3)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.fc(a + b)


class _TwoInputHead(TwoPart):
    def __init__(self) -> None:
        super().__init__()
        self.head = _Pair()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.backbone(x)
        return self.head(features.mean(-1), features.amax(-1))


def test_part_inputs_and_a_part_of_two_inputs_is_refused_by_name():
    module, x = _TwoInputHead(), torch.randn(4, 1, 16)
    module.train()
    group = group_of(module, NAMES)
    inputs = part_inputs(group, x)
    assert module.training and module.backbone.b1.training  # the modes are set back
    assert torch.equal(inputs["backbone"][0], x)
    with torch.no_grad():
        features = module.eval().backbone(x)
    torch.testing.assert_close(inputs["head"][0], features.mean(-1))
    torch.testing.assert_close(inputs["head"][1], features.amax(-1))
    with pytest.raises(QuantizationError, match=r"`head` is called with 2 inputs"):
        prepare_qat_parts(group_of(module, NAMES), x, "int8")
