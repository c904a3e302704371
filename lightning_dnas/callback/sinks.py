"""Where an export goes besides the module: files and W&B.

An export (the callback's word for "the search network replaced by the plain network it
found") produces a record (the :attr:`~lightning_dnas.DNASCallback.history` entry: stage,
method, best epoch, costs, architecture spec) and the plain network. This module writes
them: :func:`write_export_files` (``<stage>.json`` and ``<stage>.pt``) and
:func:`log_export_wandb` (tables, artifacts, run summary); at the end of a fit whose last
stage is quantisation-aware, :func:`write_int8` (``<stage>.int8.onnx``, one per part for
several modules). ONNX export is
:mod:`lightning_dnas.onnx_export`, which the callback does not call.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.loggers import Logger, WandbLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import nn

from ..network_group import part_inputs
from ..restore import NetworkStructure, save_network
from .notes import export_summary

LAYER_COLUMNS = ["layer", "type", "out_channels", "original", "taps", "kernel", "dilation"]
CHOICE_COLUMNS = ["choice", "index", "candidate"]


def export_files_dir(export_dir: str | Path | bool | None,
                     log_dir: Callable[[], str | None], default_root_dir: str,
                     ) -> Path | None:  # fmt: skip
    """The folder of the export files: ``export_dir``; ``None`` or ``True``:
    ``<log_dir()>/dnas`` (``<default_root_dir>/dnas`` when that is ``None``); ``False``:
    none. ``log_dir`` is called only when needed: ``Trainer.log_dir`` is a collective call
    under DDP (a broadcast), and this runs on global rank zero only."""
    if export_dir is False:
        return None
    if export_dir not in (None, True):
        return Path(export_dir)  # type: ignore[arg-type]
    return Path(log_dir() or default_root_dir) / "dnas"


def publish(trainer: Any, dnas: Any, record: dict[str, Any],
            widths: list[dict[str, Any]]) -> None:  # fmt: skip
    """Everything an export of ``dnas`` (the DNASCallback, its network ``dnas.exported``)
    writes, on global rank zero: the files (:func:`write_export_files`, in
    :func:`export_files_dir`) and the W&B records of every ``WandbLogger``; then, on rank
    zero, the summary line."""
    net = dnas.exported
    if trainer.is_global_zero:
        root = _files_dir(trainer, dnas)
        if root is not None:
            write_export_files(root, record, net, dnas._keeper.structure, dnas._example)
        log_export_wandb_all(trainer.loggers, trainer.global_step, record, widths, net,
                             dnas._keeper.structure)  # fmt: skip
    rank_zero_info(export_summary(record))


def _files_dir(trainer: Any, dnas: Any) -> Path | None:
    """:func:`export_files_dir` of the fit; none under ``fast_dev_run`` unless
    ``export_dir`` names a folder (a smoke test writes nothing, as Lightning's own)."""
    if trainer.fast_dev_run and dnas.export_dir in (None, True):
        return None
    return export_files_dir(dnas.export_dir, lambda: trainer.log_dir, trainer.default_root_dir)


def write_final(trainer: Any, dnas: Any) -> None:
    """At the end of a fit (global rank zero): the final, fine-tuned network as
    ``final.pt`` (:func:`~lightning_dnas.restore.save_network`) and ``final.onnx``; then
    the int8 files of a quantisation-aware fit (:func:`write_int8`)."""
    root = _files_dir(trainer, dnas) if trainer.is_global_zero else None
    if root is not None and dnas._keeper is not None:
        root.mkdir(parents=True, exist_ok=True)
        save_network(dnas.exported, dnas._keeper.structure, root / "final.pt")
        if dnas._keeper.structure.quantize is None:  # its int8 ONNX is write_int8's
            write_onnx(dnas.exported, dnas._example, root / "final.onnx")
    write_int8(trainer, dnas)


def write_onnx(net: nn.Module, example: Any, path: Path) -> None:
    """``net`` as ONNX, checked with onnxruntime on ``example``
    (:func:`~lightning_dnas.onnx_export.export_onnx`); a warning instead when the ``onnx``
    extra is missing (once per process) or the network does not export (the fit goes on)."""
    from ..onnx_export import OnnxExportError, export_onnx

    if not isinstance(example, torch.Tensor):
        rank_zero_warn(f"DNASCallback: {path.name} not written: ONNX export takes one tensor "
                       "input")  # fmt: skip
        return
    try:
        export_onnx(net, example, path)
    except ModuleNotFoundError as err:
        if not _MISSING_ONNX:
            _MISSING_ONNX.append(str(err))
            rank_zero_warn(f"DNASCallback: no ONNX files: {err}")
    except OnnxExportError as err:
        rank_zero_warn(f"DNASCallback: {path.name} not written: {err}")


_MISSING_ONNX: list[str] = []  # said once per process: the extra is optional


def write_export_files(root: Path, record: dict[str, Any], net: nn.Module,
                       structure: NetworkStructure, example: Any) -> None:  # fmt: skip
    """Write ``<root>/<stage>.json`` (the record), ``<root>/<stage>.pt`` (the exported
    network of ``structure`` as :func:`~lightning_dnas.restore.save_network` writes it:
    read by ``torch.load``'s default ``weights_only=True``, rebuilt by
    :func:`~lightning_dnas.restore.load_network`) and ``<root>/<stage>.onnx``
    (:func:`write_onnx`, checked on ``example``). The JSON goes through a temporary file
    and a rename, so a reader never sees half a record."""
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{record['stage']}.json.tmp"
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(root / f"{record['stage']}.json")
    save_network(net, structure, root / f"{record['stage']}.pt")
    write_onnx(net, example, root / f"{record['stage']}.onnx")


def write_int8(trainer: Any, dnas: Any) -> None:
    """At the end of a fit of ``dnas`` (the DNASCallback) whose last stage is
    quantisation-aware, on global rank zero: write its int8 network as
    ``<export dir>/<stage>.int8.onnx`` (QDQ, checked with onnxruntime:
    :func:`~lightning_dnas.quantize.export_int8_onnx`) and keep the
    :class:`~lightning_dnas.quantize.Int8Export` report in ``dnas.int8``. Several modules
    (``network=[...]``): one file per part, ``<stage>.<part>.int8.onnx``, each checked on
    the input the module's ``forward`` gives that part, and ``dnas.int8`` a dict of their
    reports by part. Without the ``onnx`` extra, or with ``export_dir=False``, a warning
    says that nothing was written (the fit itself needs neither)."""
    stage = dnas.stage
    if stage.quantize is None or not trainer.is_global_zero:
        return
    root = export_files_dir(dnas.export_dir, lambda: trainer.log_dir, trainer.default_root_dir)
    if root is None:
        rank_zero_warn("DNASCallback: export_dir=False: the int8 ONNX is not written")
        return
    from ..quantize.onnx_qdq import export_int8_onnx

    try:
        if isinstance(dnas.network, str):
            dnas.int8 = export_int8_onnx(dnas.exported, dnas._example,
                                         root / f"{stage.name}.int8.onnx")  # fmt: skip
            return
        inputs = part_inputs(dnas.exported, dnas._example)
        dnas.int8 = {name: export_int8_onnx(dnas.exported.get_submodule(name), inputs[name][0],
                                            root / f"{stage.name}.{name}.int8.onnx")
                     for name in dnas.network}  # fmt: skip
    except ModuleNotFoundError as err:
        rank_zero_warn(f"DNASCallback: int8 ONNX not written: {err}")


def log_export_wandb_all(loggers: Iterable[Logger], step: int, record: dict[str, Any],
                         widths: list[dict[str, Any]], net: nn.Module,
                         structure: NetworkStructure) -> None:  # fmt: skip
    """:func:`log_export_wandb` to every ``WandbLogger`` among ``loggers``; wandb itself
    is imported only when there is one."""
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            log_export_wandb(logger, step, record, widths, net, structure)


def log_export_wandb(logger: WandbLogger, step: int, record: dict[str, Any],
                     widths: list[dict[str, Any]], net: nn.Module,
                     structure: NetworkStructure) -> None:  # fmt: skip
    """Log one export to a W&B run: the tables ``dnas/<stage>/layers`` (``widths``, the
    search network's :meth:`~lightning_dnas.nas.engine.DNAS.layer_widths`) and
    ``dnas/<stage>/choices`` at ``step``; the artifacts ``dnas-arch-<run id>``
    (``arch.json``: the record) and ``dnas-model-<run id>`` (``model.pt``: ``net``, the
    plain network of ``structure``, in the form of ``<stage>.pt``:
    :func:`~lightning_dnas.restore.save_network`, read by ``torch.load``'s default
    ``weights_only=True``, rebuilt by :func:`~lightning_dnas.restore.load_network`), a
    version per export aliased with the stage name and ``latest``; ``dnas/final_<cost>``
    in the run summary."""
    import wandb  # optional: only runs that use a WandbLogger need it

    stage = record["stage"]
    choices = [[name, c["index"], c["name"]] for name, c in record["arch"]["choices"].items()]
    logger.log_table(f"dnas/{stage}/layers", LAYER_COLUMNS,
                     [[row[c] for c in LAYER_COLUMNS] for row in widths], step=step)  # fmt: skip
    logger.log_table(f"dnas/{stage}/choices", CHOICE_COLUMNS, choices, step=step)
    run = logger.experiment
    meta = {"stage": stage, "method": record["method"], "costs": record["costs"]}
    arch = wandb.Artifact(f"dnas-arch-{run.id}", type="dnas-architecture", metadata=meta)
    with arch.new_file("arch.json") as f:
        json.dump(record, f, indent=1)
    model = wandb.Artifact(f"dnas-model-{run.id}", type="model", metadata=meta)
    with model.new_file("model.pt", mode="wb") as f:
        save_network(net, structure, f)  # no pickled class: loadable with weights_only
    for artifact in (arch, model):
        run.log_artifact(artifact, aliases=[stage, "latest"])
    run.summary.update({f"dnas/final_{name}": value for name, value in record["costs"].items()})


__all__ = [
    "CHOICE_COLUMNS",
    "LAYER_COLUMNS",
    "export_files_dir",
    "log_export_wandb",
    "log_export_wandb_all",
    "publish",
    "write_export_files",
    "write_final",
    "write_int8",
    "write_onnx",
]
