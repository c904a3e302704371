"""ONNX export of a found network, checked with onnxruntime.

The deployment step after a search: the exported plain ``nn.Module`` is written as ONNX
with PyTorch's ``torch.export``-based exporter (``torch.onnx.export(dynamo=True)``), with
a dynamic batch dimension where the network allows it, and the file is run with
onnxruntime on the example input; the largest absolute difference to the PyTorch output
is returned, and a difference beyond the tolerance raises. Needs the ``onnx`` extra
(``pip install 'lightning_dnas[onnx]'``: onnx, onnxscript, onnxruntime).
"""

from __future__ import annotations

import importlib.util
import logging
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

__all__ = ["OnnxExportError", "export_onnx"]

_EXTRA_MODULES = ("onnx", "onnxscript", "onnxruntime")


class OnnxExportError(RuntimeError):
    """The ONNX file could not be written, or onnxruntime disagrees with PyTorch."""


def _require_onnx() -> None:
    missing = [name for name in _EXTRA_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise ModuleNotFoundError(
            f"ONNX export needs {', '.join(missing)}: pip install 'lightning_dnas[onnx]'"
        )


def export_onnx(
    model: nn.Module,
    example_input: Tensor,
    path: str | Path,
    *,
    dynamic_batch: bool = True,
    atol: float = 1e-4,
    rtol: float = 1e-4,
) -> float:
    """Write ``model`` (in eval mode) to ``path`` as ONNX and check it with onnxruntime.

    Args:
        model: a plain network, e.g. :meth:`DNAS.export`'s result; it is put in eval mode
            for the export and its mode is restored afterwards.
        example_input: one input batch ``(N, ...)`` (what tracing and the check use).
        path: the ``.onnx`` file to write (parent folders are created).
        dynamic_batch: export the first dimension as dynamic; when the network's code fixes
            the batch size, the file takes the example's batch only, with a warning.
        atol, rtol: the check passes when ``|ort - torch| <= atol + rtol * |torch|``
            everywhere.

    Returns:
        The largest absolute difference between onnxruntime's and PyTorch's outputs on
        ``example_input``.

    Raises:
        ModuleNotFoundError: the ``onnx`` extra is not installed.
        OnnxExportError: the exporter failed, or the outputs differ beyond the tolerance.
    """
    _require_onnx()
    import onnxruntime

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            expected = model(example_input)
        if not isinstance(expected, Tensor):
            raise OnnxExportError(
                f"export_onnx handles networks with one tensor output, got "
                f"{type(expected).__name__}"
            )
        _write(model, example_input, path, dynamic_batch)
    finally:
        model.train(was_training)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    batch = session.get_inputs()[0].shape[0]
    if dynamic_batch and not isinstance(batch, str):
        # the exporter specialises silently when the code fixes the batch size
        warnings.warn(
            f"{type(model).__name__}: the batch dimension cannot be dynamic (the network "
            f"fixes it); {path} takes batch {batch} only",
            stacklevel=2,
        )
    feed = {session.get_inputs()[0].name: example_input.detach().cpu().numpy()}
    got = torch.from_numpy(session.run(None, feed)[0])
    expected = expected.detach().cpu()
    if got.shape != expected.shape:
        raise OnnxExportError(
            f"onnxruntime output shape {tuple(got.shape)} != PyTorch {tuple(expected.shape)}"
        )
    diff = (got.double() - expected.double()).abs()
    if bool((diff > atol + rtol * expected.double().abs()).any()):
        raise OnnxExportError(
            f"onnxruntime differs from PyTorch by up to {float(diff.max()):.3g} "
            f"(atol {atol:g}, rtol {rtol:g}) in {path}"
        )
    return float(diff.max())


def _write(model: nn.Module, example_input: Tensor, path: Path, dynamic_batch: bool) -> None:
    """``torch.onnx.export`` with a dynamic batch dimension if asked (and possible)."""
    shapes = ({0: torch.export.Dim("batch")},) if dynamic_batch else None
    try:
        try:
            _export(model, example_input, path, shapes)
        except Exception:
            if shapes is None:
                raise
            _export(model, example_input, path, None)  # the caller warns: batch fixed
    except Exception as err:
        raise OnnxExportError(
            f"torch.onnx.export failed for {type(model).__name__}: {err}"
        ) from err


def _export(model: nn.Module, example_input: Tensor, path: Path, shapes: tuple | None) -> None:
    """One ``torch.onnx.export`` call (the torch.export-based exporter)."""
    quiet = [logging.getLogger(name) for name in ("onnxscript", "onnx_ir", "torch.onnx")]
    levels = [log.level for log in quiet]
    with warnings.catch_warnings():
        # The exporter narrates its internal fallbacks through warnings and INFO log lines
        # (onnxscript's optimizer and onnx_ir's passes, printed wherever logging is configured
        # at INFO, as Hydra does); what matters to the user (a fixed batch, a mismatch) is
        # checked on the written file.
        warnings.simplefilter("ignore")
        for log in quiet:
            log.setLevel(max(log.level, logging.WARNING))
        try:
            _torch_export(model, example_input, path, shapes)
        finally:
            for log, level in zip(quiet, levels, strict=True):
                log.setLevel(level)


def _torch_export(model: nn.Module, example_input: Tensor, path: Path,
                  shapes: tuple | None) -> None:  # fmt: skip
    """The exporter call itself."""
    torch.onnx.export(
        model, (example_input,), str(path), dynamo=True, dynamic_shapes=shapes,
        input_names=["input"], output_names=["output"], verbose=False,
        external_data=False,  # one file: TinyML networks are far below the 2 GB limit
    )  # fmt: skip
