"""The application's int8 step (``quantize=int8``): the quantisation-aware fine-tune's
network written as ``export/model_int8.onnx`` and measured with onnxruntime.

What it reports (``results.json``'s ``int8`` entry, and ``int8_acc`` / ``int8_agreement``
in ``final.val`` and ``final.test``): onnxruntime's accuracy of the int8 file, the share
of samples where it gives the fake-quantised PyTorch network's class, and the file's flash
(bytes of the initializers holding weights and biases) next to SPEC section 9's ``flash``
cost of the same network (close, not equal: zero points and scales are stored apart).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor, nn

from lightning_dnas.nas.cost.memory import flash
from lightning_dnas.quantize import (
    QATNetwork,
    QuantizationError,
    check_quantize,
    export_int8_onnx,
    onnx_accuracy,
    prepare_qat,
)

from .checks import ConfigError

AGREEMENT_FLOOR = 0.99  # below this share of same classes, the run warns


def check(cfg: Any) -> str | None:
    """``cfg.quantize`` if the run can use it, else a :class:`ConfigError` listing the
    supported values (or saying that the quantisation-aware fine-tune needs epochs)."""
    try:
        kind = check_quantize(cfg.get("quantize"))
    except QuantizationError as err:
        raise ConfigError(str(err)) from None
    if kind is not None and cfg.data.task != "classification":
        raise ConfigError(f"quantize={kind} is implemented for classification runs (the int8 "
                          f"check compares classes); data {cfg.data.name!r} is "
                          f"{cfg.data.task!r}")  # fmt: skip
    if kind is not None and cfg.method.finetune_epochs < 1:
        raise ConfigError(f"quantize={kind} needs method.finetune_epochs >= 1 (the "
                          "quantisation-aware fine-tune)")  # fmt: skip
    return kind


def prepare(net: nn.Module, example: Tensor, kind: str | None) -> nn.Module:
    """``net`` itself for a float run, else its quantisation-aware version."""
    return net if kind is None else prepare_qat(net, example, kind)


def write_and_measure(qat: QATNetwork, example: Tensor, datamodule: Any, export: Path,
                      ) -> tuple[dict[str, Any], dict[str, dict[str, float]]]:  # fmt: skip
    """Write ``export/model_int8.onnx`` and measure it on the validation and test sets.

    Returns ``(entry, metrics)``: the ``int8`` entry of ``results.json`` (file, flash
    bytes, their quantisation parameters' bytes, the ``flash`` cost) and, per split,
    ``{"int8_acc", "int8_agreement"}`` to merge into ``final.<split>``.
    """
    path = export / "model_int8.onnx"
    report = export_int8_onnx(qat, example, path)
    metrics = {}
    for split, loader in (("val", datamodule.val_dataloader()),
                          ("test", datamodule.test_dataloader())):  # fmt: skip
        got = onnx_accuracy(path, loader, reference=qat)
        metrics[split] = {"int8_acc": got["acc"], "int8_agreement": got["agreement"]}
    entry = {"onnx": str(path.relative_to(export.parent)), "flash": report.flash,
             "qparam_bytes": report.qparam_bytes, "flash_cost": flash(qat),
             "float_layers": list(qat.kept_float)}  # fmt: skip
    return entry, metrics


def summary(entry: dict[str, Any], metrics: dict[str, dict[str, float]]) -> list[str]:
    """The lines printed after the table (a warning line when onnxruntime and PyTorch
    disagree on more than 1% of the test samples)."""
    test = metrics["test"]
    lines = [f"int8 ONNX: {entry['onnx']}: test acc {test['int8_acc']:.2%}, same class as "
             f"PyTorch's fake-quantised network on {test['int8_agreement']:.2%} of the test "
             f"samples; weights+biases {entry['flash']:,} B (+{entry['qparam_bytes']:,} B "
             f"scales/zero points) vs flash cost {entry['flash_cost']:,} B"]  # fmt: skip
    if test["int8_agreement"] < AGREEMENT_FLOOR:
        lines.append(f"warning: onnxruntime's int8 classes agree with PyTorch's on only "
                     f"{test['int8_agreement']:.2%} of the test samples")  # fmt: skip
    if entry["float_layers"]:
        lines.append(f"warning: kept in float: {entry['float_layers']}")
    return lines
