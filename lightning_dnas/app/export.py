"""The run's found network as ``export/model.pt``, in a form that needs no pickled class.

``torch.load``'s default (``weights_only=True`` since torch 2.6) cannot read a pickled
``nn.Module``, so the application writes the fine-tuned network the way the callback
writes its exports (:func:`~lightning_dnas.restore.save_network`): the structure as JSON
(every architecture the run's search phases exported, in order, applied to the run's start
network; ``quantize`` for a quantisation-aware fine-tune) and the ``state_dict``.
:func:`load_export` rebuilds it from a run folder alone: the start network
(``model.<seed|supernet>`` of the run's ``config.yaml``, as the phases started from it),
then :func:`~lightning_dnas.restore.load_network`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from lightning_dnas.restore import NetworkStructure, example_record, load_network, save_network

from .phases import plan

FILE = Path("export") / "model.pt"


def save_export(net: nn.Module, applied: Sequence[Mapping[str, Any]], example: Any,
                quantize: str | None, path: str | Path) -> None:  # fmt: skip
    """Write ``net`` (the run's fine-tuned network: the start network with the ``applied``
    architecture specs, oldest first, then prepared for ``quantize`` if not ``None``) to
    ``path``, read by ``torch.load(path, weights_only=True)``; ``example`` (the run's
    example input) records the input shape the rebuild traces on."""
    structure = NetworkStructure("net", [dict(spec) for spec in applied],
                                 example=example_record(example), quantize=quantize)  # fmt: skip
    save_network(net, structure, path)


def start_network(cfg: Any) -> nn.Module:
    """A fresh start network of the run configured by ``cfg``: ``model.supernet`` when its
    first search needs SuperNet choices (the cascade, ``method=supernet``), else
    ``model.seed``."""
    start, _ = plan(cfg.method)
    return instantiate(cfg.model[start])


def load_export(run_dir: str | Path) -> nn.Module:
    """The fine-tuned network of the application run in ``run_dir`` (its
    ``export/model.pt``), rebuilt from the run's ``config.yaml``: :func:`start_network`,
    then :func:`~lightning_dnas.restore.load_network` (architectures applied, the weights
    loaded strictly; the file is read with ``weights_only=True``)."""
    run_dir = Path(run_dir)
    cfg = OmegaConf.load(run_dir / "config.yaml")
    return load_network(start_network(cfg), run_dir / FILE)


__all__ = ["FILE", "load_export", "save_export", "start_network"]
