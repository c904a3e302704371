"""int8 deployment of a found network (SPEC section 10), without Lightning.

:func:`prepare_qat` (fake-quantised network for the fine-tune), :func:`to_int8` (the same
function with int8 weights / int32 biases, in PyTorch) and :func:`export_int8_onnx` (the
QDQ ONNX file, checked with onnxruntime). Why ``torch.ao.quantization``: :mod:`.qat`.
"""

from .int8 import Int8Layer, to_int8
from .onnx_qdq import (
    Int8Export,
    Int8ExportError,
    export_int8_onnx,
    inspect_int8_onnx,
    onnx_accuracy,
)
from .qat import SUPPORTED, QATNetwork, QuantizationError, check_quantize, prepare_qat

__all__ = [
    "SUPPORTED",
    "Int8Export",
    "Int8ExportError",
    "Int8Layer",
    "QATNetwork",
    "QuantizationError",
    "check_quantize",
    "export_int8_onnx",
    "inspect_int8_onnx",
    "onnx_accuracy",
    "prepare_qat",
    "to_int8",
]
