"""export_onnx: the found network as ONNX, checked against onnxruntime."""

from __future__ import annotations

import warnings

import numpy as np
import onnxruntime
import pytest
import torch
from torch import Tensor, nn

import lightning_dnas.onnx_export as onnx_export
from lightning_dnas import PIT, OnnxExportError, export_onnx
from lightning_dnas.zoo import DSCNNThesis


def small_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.BatchNorm2d(8), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4),
    )  # fmt: skip


def run_onnx(path, x: Tensor) -> Tensor:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])


def test_an_exported_search_network_runs_in_onnxruntime_for_any_batch(tmp_path) -> None:
    torch.manual_seed(0)
    x = torch.randn(3, 1, 8, 8)
    search = PIT(small_cnn(), example_input=x, cost="params")
    with torch.no_grad():  # prune some channels so that the export is not the seed
        for p in search.nas_parameters():
            p.copy_(torch.linspace(-1, 1, p.numel()).view_as(p))
    net = search.export().train()
    assert net[0].out_channels < 8
    diff = export_onnx(net, x, tmp_path / "sub" / "net.onnx")
    assert 0 <= diff < 1e-4 and net.training  # mode restored
    other = torch.randn(5, 1, 8, 8)  # another batch size: the batch dimension is dynamic
    net.eval()
    with torch.no_grad():
        np.testing.assert_allclose(run_onnx(tmp_path / "sub" / "net.onnx", other), net(other),
                                   atol=1e-5, rtol=1e-4)  # fmt: skip


def test_thesis_dscnn_with_squeeze_exports_with_a_dynamic_batch(tmp_path) -> None:
    net = DSCNNThesis()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        assert export_onnx(net, torch.randn(2, 1, 49, 10), tmp_path / "dscnn.onnx") < 1e-4
    assert run_onnx(tmp_path / "dscnn.onnx", torch.randn(4, 1, 49, 10)).shape == (4, 12)


def test_an_exporter_failure_with_a_dynamic_batch_retries_static(tmp_path, monkeypatch) -> None:
    real = onnx_export._export
    calls = []

    def no_dynamic(model, example_input, path, shapes):
        calls.append(shapes is not None)
        if shapes is not None:
            raise RuntimeError("data-dependent shape")
        real(model, example_input, path, shapes)

    monkeypatch.setattr(onnx_export, "_export", no_dynamic)
    with pytest.warns(UserWarning, match="takes batch 3 only"):
        export_onnx(nn.Linear(4, 2), torch.randn(3, 4), tmp_path / "static.onnx")
    assert calls == [True, False]

    def always_fails(*args: object) -> None:
        raise ValueError("no")

    monkeypatch.setattr(onnx_export, "_export", always_fails)
    with pytest.raises(OnnxExportError, match=r"torch\.onnx\.export failed for Linear: no"):
        export_onnx(nn.Linear(4, 2), torch.randn(3, 4), tmp_path / "none.onnx")


class FixedBatch(nn.Module):
    """Code that fixes the batch size (a reshape to the literal 3)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(x.reshape(3, 8))


def test_a_fixed_batch_falls_back_to_a_static_export_with_a_warning(tmp_path) -> None:
    x = torch.randn(3, 2, 4)
    with pytest.warns(UserWarning, match="batch dimension cannot be dynamic.*takes batch 3 only"):
        diff = export_onnx(FixedBatch(), x, tmp_path / "fixed.onnx")
    assert diff < 1e-5
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # static by request: no warning
        export_onnx(FixedBatch(), x, tmp_path / "static.onnx", dynamic_batch=False)


def test_a_disagreeing_file_raises(tmp_path, monkeypatch) -> None:
    real = onnx_export._export

    def export_another_network(model, example_input, path, shapes):
        other = nn.Linear(4, 2)
        real(other, example_input, path, shapes)

    monkeypatch.setattr(onnx_export, "_export", export_another_network)
    with pytest.raises(OnnxExportError, match="differs from PyTorch"):
        export_onnx(nn.Linear(4, 2), torch.randn(3, 4), tmp_path / "bad.onnx")


def test_bad_inputs_and_a_missing_extra_are_named(tmp_path, monkeypatch) -> None:
    class TwoOutputs(nn.Module):
        def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
            return x, x

    with pytest.raises(OnnxExportError, match="one tensor output, got tuple"):
        export_onnx(TwoOutputs(), torch.randn(2, 3), tmp_path / "two.onnx")
    real = onnx_export.importlib.util.find_spec
    monkeypatch.setattr(onnx_export.importlib.util, "find_spec",
                        lambda name: None if name == "onnxruntime" else real(name))  # fmt: skip
    with pytest.raises(ModuleNotFoundError, match=r"onnxruntime.*lightning_dnas\[onnx\]"):
        export_onnx(nn.Linear(4, 2), torch.randn(3, 4), tmp_path / "x.onnx")
