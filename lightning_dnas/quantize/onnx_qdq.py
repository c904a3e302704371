"""The int8 network as ONNX (QDQ), checked with onnxruntime.

:func:`export_int8_onnx` writes :func:`~lightning_dnas.quantize.int8.to_int8`'s network
with the ``torch.export``-based exporter: activations as QuantizeLinear ->
DequantizeLinear, weights as int8 initializers and biases as int32 initializers, each read
through a DequantizeLinear (the QDQ format that onnxruntime runs with int8 kernels and
STM32Cube.AI / onnx2tf import). The file is then read back: every Conv / Gemm / MatMul of
a quantised layer must take its weight from an int8 initializer (else
:class:`Int8ExportError`: never a float file labelled int8), and onnxruntime must give the
fake-quantised PyTorch network's class on the example input.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lightning_dnas.onnx_export import OnnxExportError

from .int8 import to_int8
from .qat import QATNetwork

_MATMULS = ("Conv", "Gemm", "MatMul")


class Int8ExportError(OnnxExportError):
    """The int8 ONNX file is not what it should be (float weights, or onnxruntime
    disagrees with the fake-quantised network)."""


@dataclass
class Int8Export:
    """What :func:`export_int8_onnx` wrote: the file, ``flash`` (bytes of the initializers
    holding weights and biases: int8 weights, int32 biases, float ones of layers kept in
    float), ``qparam_bytes`` (their scales and zero points), the count of int8 and float
    weight initializers, and onnxruntime's class agreement on the example input."""

    path: Path
    flash: int
    qparam_bytes: int
    int8_weights: int
    float_weights: list[str] = field(default_factory=list)
    agreement: float = 1.0


def export_int8_onnx(qat: QATNetwork, example_input: Tensor, path: str | Path) -> Int8Export:
    """Write the int8 network of ``qat`` to ``path`` and check it (see the module doc).

    Raises:
        ModuleNotFoundError: the ``onnx`` extra is missing.
        Int8ExportError: the exporter failed, a quantised layer's weight is not int8 in the
            file, or onnxruntime's classes differ from PyTorch's on ``example_input``.
    """
    from lightning_dnas.onnx_export import _require_onnx, _write  # the float exporter's path

    _require_onnx()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    int8 = to_int8(qat)
    try:
        _write(int8, example_input, path, dynamic_batch=True)
    except OnnxExportError as err:
        raise Int8ExportError(str(err)) from err
    report = inspect_int8_onnx(path)
    kept = len(qat.kept_float)
    if report.int8_weights == 0 or len(report.float_weights) > kept:
        raise Int8ExportError(
            f"{path}: {len(report.float_weights)} layers read float weights "
            f"({report.float_weights}) but only {kept} were kept in float by the quantisation "
            f"flow ({qat.kept_float}); {report.int8_weights} read int8 weights")  # fmt: skip
    was = qat.training
    qat.eval()
    try:
        with torch.no_grad():
            expected = qat(example_input)
    finally:
        qat.train(was)
    got = run_onnx(path, example_input)
    report.agreement = float((got.argmax(-1) == expected.argmax(-1)).float().mean())
    if got.shape != expected.shape:
        raise Int8ExportError(f"{path}: onnxruntime output shape {tuple(got.shape)} != "
                              f"PyTorch {tuple(expected.shape)}")  # fmt: skip
    return report


def run_onnx(path: str | Path, x: Tensor, session: Any = None) -> Tensor:
    """onnxruntime's output for ``x`` (CPU), as a float tensor."""
    import onnxruntime

    if session is None:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: x.detach().cpu().numpy().astype(np.float32)}
    return torch.from_numpy(session.run(None, feed)[0])


def inspect_int8_onnx(path: str | Path) -> Int8Export:
    """Read ``path`` and classify the weight of every Conv / Gemm / MatMul: from an int8
    initializer through DequantizeLinear, or float (a list of the nodes); count the bytes of
    the weight and bias initializers and of their scales and zero points."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    producer = {out: n for n in graph.node for out in n.output}
    nbytes = lambda name: numpy_helper.to_array(inits[name]).nbytes  # noqa: E731
    flash = qparams = int8 = 0
    floats: list[str] = []
    seen: set[str] = set()
    for node in graph.node:
        if node.op_type not in _MATMULS:
            continue
        for slot, value in enumerate(node.input[1:3], start=1):
            src = producer.get(value)
            if src is not None and src.op_type == "DequantizeLinear" and src.input[0] in inits:
                data = src.input[0]
                if slot == 1:
                    if inits[data].data_type == onnx.TensorProto.INT8:
                        int8 += 1
                    else:
                        floats.append(node.name)
                if data not in seen:
                    seen.add(data)
                    flash += nbytes(data)
                    qparams += sum(nbytes(n) for n in src.input[1:] if n in inits)
            elif src is not None and src.op_type == "DequantizeLinear":
                # quantised at run time from a float initializer: float storage
                q = producer.get(src.input[0])
                stored = q.input[0] if q is not None and q.op_type == "QuantizeLinear" else ""
                if stored in inits:
                    if slot == 1:
                        floats.append(node.name)
                    if stored not in seen:
                        seen.add(stored)
                        flash += nbytes(stored)
            elif value in inits:  # a float weight or bias (layer kept in float)
                if slot == 1:
                    floats.append(node.name)
                if value not in seen:
                    seen.add(value)
                    flash += nbytes(value)
            elif slot == 1 and value:
                # an activation x activation product (attention): no weight to store
                continue
    return Int8Export(Path(path), flash, qparams, int8, floats)


def onnx_accuracy(path: str | Path, loader: Any, reference: torch.nn.Module | None = None
                  ) -> dict[str, float]:  # fmt: skip
    """Test ``path`` on ``loader``'s ``(x, y)`` batches with onnxruntime: ``{"acc"}`` and,
    with ``reference`` (the fake-quantised PyTorch network, evaluated in eval mode),
    ``"agreement"``: the share of samples where both give the same class."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    correct = same = total = 0
    was = None if reference is None else reference.training
    if reference is not None:
        reference.eval()
    try:
        for x, y in loader:
            pred = run_onnx(path, x, session).argmax(-1)
            correct += int((pred == y).sum())
            if reference is not None:
                with torch.no_grad():
                    same += int((reference(x).argmax(-1) == pred).sum())
            total += len(y)
    finally:
        if reference is not None:
            reference.train(bool(was))
    out = {"acc": correct / max(total, 1)}
    if reference is not None:
        out["agreement"] = same / max(total, 1)
    return out
