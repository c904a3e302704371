"""The int8 network of a :class:`~lightning_dnas.quantize.qat.QATNetwork`, in PyTorch.

:func:`to_int8` rewrites the QAT graph so that it computes with stored integers, in the
form ONNX's QDQ format has: every activation fake quantiser becomes a quantize ->
dequantize pair (``quantized_decomposed`` ops, which the ONNX exporter writes as
QuantizeLinear / DequantizeLinear), and every fused Conv/Linear (+BN) (+ReLU) becomes an
:class:`Int8Layer` holding the BN-folded weight as int8 (per-channel scale, zero point 0)
and the folded bias as int32 at scale ``input scale * weight scale`` (what CMSIS-NN and
TFLite store), dequantised in its forward. The weights and scales are the ones the fake
quantisers used, so the result computes the fake-quantised network's function (up to the
bias rounding, below one integer step of the accumulator).
"""

from __future__ import annotations

import copy
from typing import Any

import torch

# Importing it registers torch.ops.quantized_decomposed (with the FX QAT flow, in torch).
import torch.ao.quantization.fx._decomposed
import torch.nn.functional as F
from torch import Tensor, fx, nn

from .qat import ACT_RANGE, WEIGHT_RANGE, QATNetwork, QuantizationError, _fake_quantizers

_QD = torch.ops.quantized_decomposed
_INT32 = (-(2**31), 2**31 - 1)
_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


class Int8Layer(nn.Module):
    """A Conv or Linear with int8 weights (per output channel) and an int32 bias, BN
    folded, optionally followed by ReLU. Buffers: ``weight_int8``, ``weight_scale``,
    ``bias_int32`` (or a float ``bias`` when the input scale is unknown)."""

    def __init__(self, weight: Tensor, weight_scale: Tensor, bias: Tensor,
                 input_scale: float | None, conv: dict[str, Any] | None,
                 relu: bool) -> None:  # fmt: skip
        super().__init__()
        shape = (-1,) + (1,) * (weight.dim() - 1)
        q = torch.round(weight / weight_scale.reshape(shape)).clamp(*WEIGHT_RANGE)
        self.register_buffer("weight_int8", q.to(torch.int8))
        self.register_buffer("weight_scale", weight_scale.float())
        self.register_buffer("weight_zero", torch.zeros(len(weight_scale), dtype=torch.int64))
        if input_scale is None:
            self.register_buffer("bias", bias.float())
            self.bias_int32: Tensor | None = None
        else:
            scale = weight_scale.double() * input_scale
            bq = torch.round(bias.double() / scale).clamp(*_INT32).to(torch.int32)
            self.register_buffer("bias_int32", bq)
            self.register_buffer("bias_scale", scale.float())
        self.conv, self.relu = conv, relu

    def forward(self, x: Tensor) -> Tensor:
        """Dequantised weight and bias (DequantizeLinear in ONNX), then the float op."""
        w = _QD.dequantize_per_channel(self.weight_int8, self.weight_scale, self.weight_zero,
                                       0, *WEIGHT_RANGE, torch.int8)  # fmt: skip
        if self.bias_int32 is None:
            b = self.bias
        else:
            b = _QD.dequantize_per_channel(self.bias_int32, self.bias_scale, self.weight_zero,
                                           0, *_INT32, torch.int32)  # fmt: skip
        if self.conv is None:
            y = F.linear(x, w, b)
        else:
            c = self.conv
            y = _CONV[w.dim() - 2](x, w, b, c["stride"], c["padding"], c["dilation"],
                                   c["groups"])  # fmt: skip
        return torch.relu(y) if self.relu else y


def _folded(module: nn.Module) -> tuple[Tensor, Tensor]:
    """BN-folded float weight and bias of a QAT Conv/Linear module (eval form: running
    statistics), the tensors its weight fake quantiser sees in eval."""
    weight = module.weight.detach()
    bias = module.bias.detach() if module.bias is not None else torch.zeros(weight.shape[0])
    bn = getattr(module, "bn", None)
    if isinstance(bn, nn.modules.batchnorm._BatchNorm):
        std = torch.sqrt(bn.running_var + bn.eps)
        gamma = bn.weight.detach() if bn.affine else torch.ones_like(std)
        beta = bn.bias.detach() if bn.affine else torch.zeros_like(std)
        factor = gamma / std
        weight = weight * factor.reshape((-1,) + (1,) * (weight.dim() - 1))
        bias = beta + (bias - bn.running_mean) * factor
    return weight, bias


def _is_relu_fused(module: nn.Module) -> bool:
    import torch.ao.nn.intrinsic.qat as nniqat

    fused = (nniqat.ConvBnReLU1d, nniqat.ConvBnReLU2d, nniqat.ConvBnReLU3d, nniqat.ConvReLU1d,
             nniqat.ConvReLU2d, nniqat.ConvReLU3d, nniqat.LinearReLU)  # fmt: skip
    return isinstance(module, fused)


def _conv_args(module: nn.Module, name: str) -> dict[str, Any] | None:
    if isinstance(module, nn.Linear):
        return None
    if not isinstance(module, nn.modules.conv._ConvNd) or module.transposed:
        raise QuantizationError(f"{name} ({type(module).__name__}): no int8 form for this layer")
    if module.padding_mode != "zeros" or isinstance(module.padding, str):
        raise QuantizationError(f"{name} ({type(module).__name__}): padding "
                                f"{module.padding!r} / mode {module.padding_mode!r} has no "
                                "int8 form here (use numeric zero padding)")  # fmt: skip
    return {"stride": module.stride, "padding": module.padding, "dilation": module.dilation,
            "groups": module.groups}  # fmt: skip


def _fq_qparams(fq: nn.Module) -> tuple[float, int]:
    if fq.qscheme not in (torch.per_tensor_affine, torch.per_tensor_symmetric):
        raise QuantizationError(f"activation quantiser with {fq.qscheme}: not per tensor")
    return float(fq.scale.reshape(-1)[0]), int(fq.zero_point.reshape(-1)[0])


def to_int8(qat: QATNetwork) -> fx.GraphModule:
    """The int8 network of ``qat`` (in eval mode, ranges as they are now): a GraphModule
    with stored int8 weights / int32 biases and quantize -> dequantize pairs on the
    activations. ``qat`` is not changed.

    Raises:
        QuantizationError: a quantised layer with no int8 form here (named).
    """
    from torch.ao.quantization import FakeQuantizeBase

    gm = copy.deepcopy(qat.graph).eval()
    # not named_modules(): it lists a quantiser shared by two nodes (mean, pad) once
    modules = {str(n.target): gm.get_submodule(str(n.target))
               for n in gm.graph.nodes if n.op == "call_module"}  # fmt: skip
    for fq in _fake_quantizers(gm):
        if fq.fake_quant_enabled[0] != 1:
            raise QuantizationError("a fake quantiser is disabled: the int8 network would "
                                    "not compute what the QAT network computes")  # fmt: skip
    scales: dict[fx.Node, float] = {}  # dequantize node -> its scale (a layer's input scale)
    for node in list(gm.graph.nodes):
        if node.op != "call_module":
            continue
        module = modules[str(node.target)]
        if isinstance(module, FakeQuantizeBase):
            scale, zero = _fq_qparams(module)
            with gm.graph.inserting_after(node):
                q = gm.graph.call_function(_QD.quantize_per_tensor.default,
                                           (node.args[0], scale, zero, *ACT_RANGE, torch.int8))
            with gm.graph.inserting_after(q):
                dq = gm.graph.call_function(_QD.dequantize_per_tensor.default,
                                            (q, scale, zero, *ACT_RANGE, torch.int8))
            node.replace_all_uses_with(dq)
            gm.graph.erase_node(node)
            scales[dq] = scale
        elif isinstance(getattr(module, "weight_fake_quant", None), FakeQuantizeBase):
            name = str(node.target)
            wfq = module.weight_fake_quant
            if wfq.qscheme != torch.per_channel_symmetric or int(wfq.ch_axis) != 0:
                raise QuantizationError(f"{name}: weight quantiser {wfq.qscheme} axis "
                                        f"{wfq.ch_axis}, expected per output channel")  # fmt: skip
            weight, bias = _folded(module)
            in_scale = scales.get(node.args[0])  # None: input not quantised, bias stays float
            layer = Int8Layer(weight, wfq.scale.detach().reshape(-1), bias, in_scale,
                              _conv_args(module, name), _is_relu_fused(module))  # fmt: skip
            _set_submodule(gm, name, layer)
    gm.graph.lint()
    gm.recompile()
    gm.delete_all_unused_submodules()
    return gm


def _set_submodule(root: nn.Module, target: str, module: nn.Module) -> None:
    parent, _, leaf = target.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, module)
