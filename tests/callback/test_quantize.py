"""A quantisation-aware fine-tune inside a DNAS fit: the network becomes its QAT version
at the stage boundary, resume continues it exactly, and the fit ends with an int8 ONNX
file that onnxruntime runs."""

from __future__ import annotations

import lightning as L
import onnx
import pytest
import torch

from lightning_dnas import restore
from lightning_dnas.callback import DNASCallback
from lightning_dnas.quantize import QATNetwork
from lightning_dnas.quantize.onnx_qdq import run_onnx

from .modules import Classifier, TinyTCN, fit_with_epoch_checkpoints

# Epochs: 0-1 PIT search, 2-3 quantisation-aware fine-tune.


def _fit(tmp_path, ckpt_path=None, export_dir=None, extra=()):
    L.seed_everything(5, workers=True)
    module = Classifier(TinyTCN(channels=6))
    dnas = DNASCallback("pit", strength=1e-3, search_epochs=2, finetune_epochs=2,
                        quantize="int8", arch_lr=0.05, export_dir=export_dir or False)
    fit_with_epoch_checkpoints(module, dnas, tmp_path, 4, ckpt_path, extra)
    return module, dnas


class _ObserverSwitches(L.Callback):
    """``(epoch, {observer switch values})`` after every training batch of a QAT network."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, set[bool]]] = []

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        if isinstance(pl_module.net, QATNetwork):
            switches = {bool(m.observer_enabled.item()) for m in pl_module.net.modules()
                        if hasattr(m, "observer_enabled")}  # fmt: skip
            self.seen.append((trainer.current_epoch, switches))


def test_the_observers_run_in_every_qat_epoch_after_a_validation(tmp_path):
    # Lightning restores the training mode after validating without calling train().
    record = _ObserverSwitches()
    _fit(tmp_path, extra=(record,))
    assert {epoch for epoch, _ in record.seen} == {2, 3}  # the QAT stage
    assert all(switches == {True} for _, switches in record.seen)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    path = tmp_path_factory.mktemp("qat")
    module, dnas = _fit(path, export_dir=path / "export")
    # The end-of-fit state in eval mode, copied: the observer switches are state_dict
    # buffers that follow the mode, and the tests below switch the shared module's mode.
    module.net.eval()
    state = {k: v.clone() for k, v in module.net.state_dict().items()}
    return path, module, dnas, state


def test_the_fine_tune_is_quantisation_aware_and_ends_with_int8_onnx(uninterrupted):
    path, module, dnas, _ = uninterrupted
    assert isinstance(module.net, QATNetwork) and dnas.exported is module.net
    assert dnas.stages[-1].quantize == "int8" and len(dnas.history) == 1
    file = path / "export" / f"{dnas.stages[-1].name}.int8.onnx"
    assert dnas.int8 is not None and dnas.int8.path == file
    graph = onnx.load(str(file)).graph
    inits = {i.name: i.data_type for i in graph.initializer}
    producer = {out: n for n in graph.node for out in n.output}
    layers = [n for n in graph.node if n.op_type in ("Conv", "Gemm")]
    assert len(layers) == 3  # two convs and the classifier
    for node in layers:  # each weight: an int8 initializer read through DequantizeLinear
        dq = producer[node.input[1]]
        assert dq.op_type == "DequantizeLinear"
        assert inits[dq.input[0]] == onnx.TensorProto.INT8
    x = torch.randn(16, 1, 16, generator=torch.Generator().manual_seed(0))
    module.net.eval()
    with torch.no_grad():
        want = module.net(x).argmax(-1)
    assert (run_onnx(file, x).argmax(-1) == want).float().mean() >= 0.9


@pytest.mark.parametrize("epoch", [1, 2])
def test_resume_before_and_inside_the_qat_stage_equals_uninterrupted(uninterrupted, tmp_path,
                                                                     epoch):
    path, _, _, want = uninterrupted
    resumed, _ = _fit(tmp_path, ckpt_path=path / f"epoch={epoch}.ckpt")
    assert isinstance(resumed.net, QATNetwork)
    resumed.net.eval()  # the switches follow the mode; weights and ranges must be equal
    have = resumed.net.state_dict()
    assert set(have) == set(want)
    for key, value in want.items():
        assert torch.equal(have[key], value), key


def test_restore_rebuilds_the_qat_network_from_its_checkpoint(uninterrupted):
    path, module, _, _ = uninterrupted
    net = restore(TinyTCN(channels=6), path / "epoch=3.ckpt")
    assert isinstance(net, QATNetwork)
    net.eval(), module.net.eval()  # the observer switches follow the mode
    for key, value in module.net.state_dict().items():
        assert torch.equal(net.state_dict()[key], value), key
