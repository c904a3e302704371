"""The searched network's place in the LightningModule: convert it, export it, prepare it
for quantisation-aware training, and keep its structure in the module's ``state_dict``.

The callback swaps the network inside the user's module in place (``set_submodule`` on the
network's attribute path) and records each swap in the
:class:`~lightning_dnas.restore.StructureKeeper`, whose hooks write the structure into
every checkpoint and rebuild it from a loaded one (docs/CALLBACK.md, "Checkpoints and
resume"). Plain PyTorch: nothing here knows the trainer.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ..nas.engine import DNAS
from ..nas.methods import METHODS
from ..network_group import Network, gather, place, prepare_qat_parts
from ..quantize.qat import QATNetwork, prepare_qat
from ..restore import NetworkStructure, StructureKeeper, encode_options, example_record
from .config import already_searching, check_networks, group_trace_errors
from .notes import removed


def attach_keeper(module: nn.Module, network: Network, example: Any, cost: Any,
                  on_rebuild: Callable[[nn.Module], None]) -> StructureKeeper:  # fmt: skip
    """Record the seed network at ``network`` in ``module`` and attach the hooks that keep
    its structure in ``module``'s ``state_dict`` (``on_rebuild`` is called with each
    network a loaded checkpoint rebuilds). ``example`` may be ``None`` (no example input
    yet: a checkpoint rebuilds from its own recorded example shape). Several modules
    (``network`` a list) are kept as their group (:mod:`lightning_dnas.network_group`)."""
    check_networks(module, network)
    net = gather(module, network)
    parts = [net] if isinstance(network, str) else [net.get_submodule(n) for n in network]
    if any(isinstance(part, DNAS) for part in parts):
        raise already_searching(str(network))
    record = {} if example is None else example_record(example)
    keeper = StructureKeeper(copy.deepcopy(net), NetworkStructure(network, example=record),
                             example, cost, on_rebuild)  # fmt: skip
    keeper.attach(module)
    return keeper


def set_example(keeper: StructureKeeper, example: Any) -> None:
    """Give a keeper attached before the fit (by a validate/test) the fit's example."""
    keeper.example = example
    keeper.structure.example = example_record(example)


def convert(module: nn.Module, network: Network, keeper: StructureKeeper, example: Any,
            method: str, converter: Mapping[str, Any], cost: Any) -> DNAS:  # fmt: skip
    """Replace the plain network at ``network`` in ``module`` by its search network of
    ``method`` (with the ``converter`` options that method takes, ``cost``), on the
    network's device; record the new structure. Returns the search network."""
    net = gather(module, network)
    device = next(net.parameters()).device
    spec = METHODS[method]
    options = {k: v for k, v in converter.items() if k in spec.converter_options}
    with group_trace_errors(module, network):
        search = spec.cls(net, to_device(example, device), cost=cost, **options)
    search.to(device)
    # A new structure object, never edited in place: the keeper's hooks compare structures.
    structure = copy.deepcopy(keeper.structure)
    structure.method, structure.options = method, encode_options(options)
    keeper.structure = structure
    place(module, network, search)
    return search


def export(module: nn.Module, network: Network, keeper: StructureKeeper, search: DNAS,
           stage: str, best: Mapping[str, Any] | None, check: bool,
           ) -> tuple[nn.Module, dict[str, Any], list[dict[str, Any]]]:  # fmt: skip
    """Replace the search network at ``network`` in ``module`` by the plain network it
    exports, after
    loading the ``best`` snapshot (``{"epoch", "state"}``; ``None``: the current state);
    record the new structure. ``check`` compares the two networks on the example.

    Returns the plain network, the history record of the export (``stage``, ``method``,
    ``best_epoch``, ``costs``, ``arch``, ``removed``: :func:`~.notes.removed`) and the
    search network's layer widths.
    """
    if best is not None:
        search.load_state_dict(best["state"])
    exported = search.export(check=check)
    spec = search.arch()
    widths = search.layer_widths()
    choices = {n: len(search.choices[n].names) for n in spec.get("choices", {})}
    record = {"stage": stage, "method": search.method,
              "best_epoch": None if best is None else best["epoch"],
              "costs": {n: search.hard_cost(n) for n in search.costs}, "arch": spec,
              "removed": removed(widths, choices, searchable(search))}  # fmt: skip
    structure = copy.deepcopy(keeper.structure)
    structure.applied.append(spec)
    structure.method, structure.options = None, {}
    keeper.structure = structure
    place(module, network, exported)
    return exported, record, widths


def searchable(search: DNAS) -> dict[str, int]:
    """How much of ``search`` the architecture can change: its ``channel_masks`` (one per
    searchable channel group), ``tap_masks`` (Conv1d kernels) and ``choices``."""
    return {"channel_masks": len(search.channel_masks), "tap_masks": len(search.tap_masks),
            "choices": len(search.choices)}


def quantize(module: nn.Module, keeper: StructureKeeper | None, kind: str | None) -> bool:
    """Replace the plain network in ``module`` (where ``keeper`` records it) by its
    quantisation-aware version (:func:`~lightning_dnas.quantize.prepare_qat`, ``kind`` e.g.
    ``"int8"``, the keeper's example input calibrating its ranges; several modules: each
    part prepared on the input the module's ``forward`` gives it,
    :func:`~lightning_dnas.network_group.prepare_qat_parts`), on the network's device, and
    record the new structure; ``kind`` None (a float stage) or a network already prepared:
    nothing. Returns whether the network changed."""
    if kind is None or keeper is None:
        return False
    where = keeper.structure.network
    net = gather(module, where)
    parts = [net] if isinstance(where, str) else [net.get_submodule(n) for n in where]
    if all(isinstance(part, QATNetwork) for part in parts):
        return False
    device = next(net.parameters()).device
    example = to_device(keeper.example, device)
    if isinstance(where, str):
        qat: nn.Module = prepare_qat(net, example, kind)
    else:
        qat = prepare_qat_parts(net, example, kind)  # type: ignore[arg-type]
    structure = copy.deepcopy(keeper.structure)
    structure.quantize = kind
    keeper.structure = structure
    place(module, where, qat)
    return True


def to_device(example: Any, device: torch.device) -> Any:
    """``example`` (a tensor, or a tuple/list of them) on ``device``; other values as
    they are."""
    if isinstance(example, Tensor):
        return example.to(device)
    if isinstance(example, (tuple, list)):
        return type(example)(to_device(e, device) for e in example)
    return example


def current(module: nn.Module, network: Network) -> nn.Module:
    """The network at ``network`` in ``module`` as it is now (several modules: their
    group, which computes the module's ``forward``)."""
    return gather(module, network)


__all__ = ["attach_keeper", "convert", "current", "export", "quantize", "searchable",
           "set_example", "to_device"]
