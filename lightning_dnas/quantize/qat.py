"""Quantisation-aware training of a plain (exported) network, on ``torch.ao.quantization``.

:func:`prepare_qat` turns a plain network into a :class:`QATNetwork`: the network traced
with torch.fx, Conv/Linear + BatchNorm (+ ReLU) fused into the QAT modules that simulate
BatchNorm folding, fake quantisation on every weight (per output channel, symmetric, int8
in [-127, 127]) and on every activation the int8 kernels read or write (per tensor,
asymmetric, int8 in [-128, 127]): the TFLite / CMSIS-NN convention (SPEC section 10).
Gradients pass straight through the rounding. The result trains like any ``nn.Module``
(Lightning, DDP, checkpoints); :func:`~lightning_dnas.quantize.onnx_qdq.to_int8` turns it
into the int8 network.

Why ``torch.ao.quantization`` (FX graph mode): it ships with torch (no new dependency),
runs with torch 2.14.1 (deprecated, with a warning, but present), fuses Conv-BN-ReLU into
modules that fold BN during QAT, and its prepared network is a plain ``nn.Module``. The
alternatives checked: torchao 0.18 (imports with torch 2.14.1, has the PT2E QAT flow, but
no quantizer for this convention any more: the XNNPACK quantizer moved to ExecuTorch, so
we would write our own annotations, and its networks are ``torch.export`` graphs that
need their own train/eval switching); onnxruntime.quantization (post-training only: no
fine-tune through the rounding); brevitas 0.13 (layer replacement, no BN folding in QAT,
three more dependencies). Only this module touches the QAT library: the int8 export reads
nothing but the fake quantisers' scales and zero points, so a move to torchao's PT2E flow
(when ``torch.ao.quantization`` is removed) changes this file only.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, fx, nn

SUPPORTED = ("int8",)

# Weights: per output channel, symmetric, int8 [-127, 127] (zero point 0, -128 unused so
# that negation is exact: the TFLite convention). Activations: per tensor, asymmetric int8.
WEIGHT_RANGE = (-127, 127)
ACT_RANGE = (-128, 127)


class QuantizationError(ValueError):
    """The network cannot be quantised as asked; the message names the layer or value."""


def check_quantize(value: Any) -> str | None:
    """``value`` if it names a supported quantisation (or is None: float), else raise a
    :class:`QuantizationError` listing the supported ones."""
    if value is None or value in SUPPORTED:
        return value
    raise QuantizationError(f"quantize={value!r} is not supported; supported: "
                            f"{list(SUPPORTED)} (or None for a float network)")  # fmt: skip


def _deprecated_api() -> Any:
    """The FX QAT entry points, without torch's deprecation banner (printed on every call;
    the choice of this library is explained in the module docstring)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "torch.ao.quantization is deprecated")
        from torch.ao.quantization import quantize_fx

    return quantize_fx


def _qconfig_and_backend() -> tuple[Any, Any]:
    """The QConfigMapping of SPEC section 10 and a backend config that accepts it (the
    native config lists only quint8 activations, and a qconfig it does not list is
    silently ignored: every pattern gets the int8 dtype config added)."""
    from torch.ao.quantization import (
        FakeQuantize,
        MovingAverageMinMaxObserver,
        MovingAveragePerChannelMinMaxObserver,
        QConfig,
        QConfigMapping,
    )
    from torch.ao.quantization.backend_config import DTypeConfig, get_native_backend_config

    act = FakeQuantize.with_args(
        observer=MovingAverageMinMaxObserver, quant_min=ACT_RANGE[0], quant_max=ACT_RANGE[1],
        dtype=torch.qint8, qscheme=torch.per_tensor_affine)  # fmt: skip
    weight = FakeQuantize.with_args(
        observer=MovingAveragePerChannelMinMaxObserver, quant_min=WEIGHT_RANGE[0],
        quant_max=WEIGHT_RANGE[1], dtype=torch.qint8, qscheme=torch.per_channel_symmetric,
        ch_axis=0)  # fmt: skip
    backend = get_native_backend_config()
    int8 = DTypeConfig(input_dtype=torch.qint8, output_dtype=torch.qint8,
                       weight_dtype=torch.qint8, bias_dtype=torch.float)  # fmt: skip
    for pattern in backend.configs:
        pattern.add_dtype_config(int8)
    return QConfigMapping().set_global(QConfig(activation=act, weight=weight)), backend


def _fake_quantizers(module: nn.Module) -> Iterator[nn.Module]:
    from torch.ao.quantization import FakeQuantizeBase

    return (m for m in module.modules() if isinstance(m, FakeQuantizeBase))


def _has_weight_quant(module: nn.Module) -> bool:
    return isinstance(getattr(module, "weight_fake_quant", None), nn.Module)


class QATNetwork(nn.Module):
    """A network under quantisation-aware training (from :func:`prepare_qat`).

    ``graph`` is the prepared torch.fx GraphModule; ``kept_float`` names the layers with
    parameters that stay float (warned about when prepared). The observers that set the
    fake quantisers' ranges run in training mode only: ``eval()`` freezes the ranges, so
    validating or testing does not move them. The switch follows ``self.training`` at
    every forward, not only :meth:`train`: Lightning restores the training mode after a
    validation loop by setting each module's ``training`` flag, without calling
    ``train()``, which left the observers off for the rest of the fit.
    """

    def __init__(self, graph: fx.GraphModule, kept_float: list[str], quantize: str) -> None:
        super().__init__()
        self.graph = graph
        self.kept_float = list(kept_float)
        self.quantize = quantize
        self._observing: bool | None = None  # the observers' switch as last set here
        # A loaded state dict brings its own switch values (buffers): set it again.
        self.register_load_state_dict_post_hook(_forget_observing)

    def forward(self, *args: Any) -> Any:
        """The fake-quantised network's output (observers on iff ``self.training``)."""
        if self._observing is not self.training:
            self._observe(self.training)
        return self.graph(*args)

    def train(self, mode: bool = True) -> QATNetwork:
        """Set the mode; observers on in training, off in eval (ranges frozen)."""
        super().train(mode)
        self._observe(mode)
        return self

    def _observe(self, on: bool) -> None:
        for fq in _fake_quantizers(self):
            fq.enable_observer(on)
        self._observing = on


def _forget_observing(module: QATNetwork, _: object) -> None:
    module._observing = None


def prepare_qat(net: nn.Module, example_input: Tensor, quantize: str = "int8",
                strict: bool = False) -> QATNetwork:  # fmt: skip
    """A :class:`QATNetwork` of a copy of ``net`` (``net`` itself is not changed).

    The fake quantisers' ranges are initialised on ``example_input`` (BatchNorm in eval,
    its statistics untouched), so every quantiser has its final shape before a checkpoint
    is loaded or DDP wraps the network, and preparing the same network twice gives the
    same structure (what resume relies on).

    Args:
        net: a plain network (e.g. a search's export), torch.fx traceable.
        example_input: one input batch.
        quantize: one of :data:`SUPPORTED`.
        strict: raise instead of warning when a layer with parameters stays float.

    Raises:
        QuantizationError: unsupported ``quantize``; the network cannot be traced (naming
            the error); no Conv/Linear layer could be quantised; with ``strict``, a layer
            that stays float (named).
    """
    if check_quantize(quantize) is None:
        raise QuantizationError("prepare_qat needs quantize, got None")
    qconfig, backend = _qconfig_and_backend()
    model = copy.deepcopy(net).train()  # prepare_qat_fx needs training mode and edits in place
    if not any(True for _ in model.children()):
        # torch.fx traces a root module's own forward, so a bare layer (an nn.Linear head of
        # several networks) would become a functional call on its parameters, which no
        # pattern quantises: as a child it is one call_module, fused and quantised.
        model = nn.Sequential(model)
    try:
        with warnings.catch_warnings():
            # the deprecation banner (see _deprecated_api); the rest is kept
            warnings.filterwarnings("ignore", "torch.ao.quantization is deprecated")
            graph = _deprecated_api().prepare_qat_fx(model, qconfig, (example_input,),
                                                     backend_config=backend)  # fmt: skip
    except Exception as err:
        raise QuantizationError(
            f"{type(net).__name__}: the quantisation flow (torch.fx trace of "
            f"torch.ao.quantization) cannot handle this network: {err}") from err  # fmt: skip
    # The qconfigs kept on the modules and in the graph's meta hold local factories: the
    # network would not pickle (torch.save, spawned DDP workers). Only torch.ao's own
    # convert_fx reads them, and the int8 export (int8.py) does not use it.
    graph.meta.clear()
    for module in graph.modules():
        if hasattr(module, "qconfig"):
            del module.qconfig
    kept = kept_float(graph)
    if not any(_has_weight_quant(m) for m in graph.modules()):
        raise QuantizationError(f"{type(net).__name__}: no Conv/Linear layer can be quantised "
                                f"(layers with parameters: {kept})")  # fmt: skip
    if kept:
        message = (f"{type(net).__name__}: the quantisation flow keeps these layers in "
                   f"float: {kept}; the int8 model runs them in float")  # fmt: skip
        if strict:
            raise QuantizationError(message)
        warnings.warn(message, stacklevel=2)
    qat = QATNetwork(graph, kept, quantize)
    graph.eval()  # BN statistics untouched; the observers are still on: calibration
    with torch.no_grad():
        qat(example_input)
    return qat.train(net.training)


def kept_float(graph: fx.GraphModule) -> list[str]:
    """Names of the leaf modules with their own parameters that get no weight quantiser,
    and of parameters read directly by the graph (functional layers): what stays float."""
    names = []
    for name, module in graph.named_modules():
        if _has_weight_quant(module) or name.endswith("weight_fake_quant"):
            continue
        own = [p for p in module.parameters(recurse=False)]
        parent = name.rpartition(".")[0]
        # BN inside a fused QAT module is folded into its conv
        inside_fused = parent and _has_weight_quant(graph.get_submodule(parent))
        if own and not inside_fused:
            names.append(f"{name} ({type(module).__name__})")
    names += [f"{n.target} (parameter used by {', '.join(str(u) for u in n.users)})"
              for n in graph.graph.nodes if n.op == "get_attr"
              and isinstance(_attr(graph, str(n.target)), nn.Parameter)]  # fmt: skip
    return names


def _attr(root: nn.Module, target: str) -> Any:
    obj: Any = root
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj
