"""The found architecture as plain JSON-able data, and ``apply_arch`` to rebuild it.

Format (``"format": "lightning_dnas.arch/1"``)::

    {"format": ..., "method": "pit" | "supernet",
     "choices": {"block1": {"index": 2, "name": "dw_sep"}},   # SuperNet: kept candidates
     "modules": {"features.0": {"type": "Conv2d", "in": [kept input channels] | null,
                                "out": [kept output channels] | null,
                                "taps": [kept kernel taps] | null,
                                "out_channels": 12, "kernel_size": [3, 3], "dilation": [1, 1]},
                 "features.1": {"type": "BatchNorm2d", "keep": [...] | null, ...}},
     "parameters": {"stage.0.layer_scale": {"dim": 0, "keep": [...], "shape": [96, 1, 1]}}}

``parameters`` (absent when empty) lists tensors that the network's forward reads directly
and broadcasts along the channel dim (layer scale, a learnable bias): cut to ``keep`` along
``dim``, ``shape`` being their shape before.

``sizes`` (absent when nothing changes) sets module attributes holding the explicit sizes
of a ``torch.split`` of the channel dim (``{"blocks.1.0.conv_dw.splits": [5, 3]}``) to the
kept width of each piece.

``cuts`` (absent when nothing changes) lists, per module path (``""``: the network
itself), the calls of that module's own forward that cut the channel dim at constant
positions pruning moved (``torch.split(y, [8, 8], 1)``, ``y[:, :8]``, ``narrow``, ``chunk``
into unequal pieces): ``{"blocks.1": [{"call": 4, "op": "split", "node": "split_2",
"widths": [8, 8], "kept": [5, 6]}]}`` (``call``: position among the function and method
calls of that forward; ``entry``: for a getitem, the slice's position in the index).
``apply_arch`` replaces each such module by a ``torch.fx.GraphModule`` of its own forward
(its submodules unchanged) cutting the kept widths instead, and logs why
(:mod:`lightning_dnas.nas.graph.cuts`).

``null`` means "all kept". Export is ``apply_arch`` on a copy of the trained seed network,
so a fresh seed network given the same spec has exactly the exported structure (and with the
exported ``state_dict`` computes the same outputs).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from .graph.cuts import rewrite_forward
from .modules import set_submodule
from .pit.export import (
    export_conv,
    export_group_norm,
    export_layer_norm,
    export_linear,
    export_norm,
    export_prelu,
    slice_tensor,
)
from .supernet.module import SuperNetModule

FORMAT = "lightning_dnas.arch/1"
LOG = logging.getLogger(__name__)
_NORMS = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)


def apply_arch(model: nn.Module, spec: dict[str, Any]) -> nn.Module:
    """Shrink ``model`` in place to the architecture ``spec`` (from ``search.arch()``) and
    return it: each module whose forward cuts the channels at constant positions that
    pruning moves (``cuts``) is replaced by a ``torch.fx.GraphModule`` of its forward
    cutting the kept widths (first: traced on the unpruned layers, its cuts are the ones
    the spec recorded even when the forward computes them from a layer's attributes), then
    each listed Conv/Linear/norm layer by its sliced copy and each listed parameter by its
    sliced copy, then each SuperNetModule by its chosen candidate, keeping the model's own
    class and forward otherwise. Returns the model (a GraphModule when the network's own
    forward is rewritten)."""
    if spec.get("format") != FORMAT:
        raise ValueError(
            f"not a lightning_dnas architecture spec (format {spec.get('format')!r}, "
            f"expected {FORMAT!r})"
        )
    model = _rewrite_cuts(model, spec.get("cuts", {}))
    for name, entry in spec["modules"].items():
        try:
            layer = model.get_submodule(name)
        except AttributeError as err:
            raise ValueError(f"the architecture names layer `{name}`, absent from "
                             f"{type(model).__name__}") from err  # fmt: skip
        if type(layer).__name__ != entry["type"]:
            raise ValueError(
                f"layer `{name}` is a {type(layer).__name__} but the architecture expects a "
                f"{entry['type']}: was the spec made for another seed network?"
            )
        set_submodule(model, name, _export_layer(layer, entry))
    for name, entry in spec.get("parameters", {}).items():
        _slice_parameter(model, name, entry)
    for name, sizes in spec.get("sizes", {}).items():
        _set_sizes(model, name, sizes)
    for name, choice in spec.get("choices", {}).items():
        module = model.get_submodule(name)
        if not isinstance(module, SuperNetModule):
            raise ValueError(f"the architecture chooses a candidate at `{name}`, which is a "
                             f"{type(module).__name__}, not a SuperNetModule")  # fmt: skip
        if choice["name"] not in module.names:
            raise ValueError(f"`{name}` has candidates {module.names}, not {choice['name']!r}")
        set_submodule(model, name, module.candidates[choice["name"]])
    return model


def _rewrite_cuts(model: nn.Module, cuts: dict[str, list[dict[str, Any]]]) -> nn.Module:
    """Replace each module of ``cuts`` (deepest first, so that an enclosing module traced
    alone calls the rewritten one) by its rewritten forward; log which and why."""
    for name in sorted(cuts, key=lambda n: -1 if n == "" else n.count("."), reverse=True):
        try:
            module = model.get_submodule(name)
        except AttributeError as err:
            raise ValueError(f"the architecture rewrites the forward of `{name}`, absent "
                             f"from {type(model).__name__}") from err  # fmt: skip
        rewritten = rewrite_forward(module, cuts[name], name)
        if name:
            set_submodule(model, name, rewritten)
        else:
            model = rewritten
        moved = ", ".join(f"`{c['node']}` ({c['op']}: pieces {c['widths']} -> {c['kept']})"
                          for c in cuts[name])  # fmt: skip
        LOG.info(
            "lightning_dnas: the forward of `%s` (%s) is exported as a torch.fx.GraphModule: "
            "it cuts the channels at constant positions that pruning moved, rewritten to the "
            "kept widths: %s", name or "the network", type(module).__name__, moved,
        )  # fmt: skip
    return model


def _set_sizes(model: nn.Module, name: str, sizes: list[int]) -> None:
    """Set the split sizes attribute ``name`` (timm MixNet's ``conv_dw.splits``) to the
    pieces' kept widths, keeping its type (list or tuple)."""
    owner_name, _, leaf = name.rpartition(".")
    old = getattr(model.get_submodule(owner_name), leaf, None)
    if type(old) not in (list, tuple) or len(old) != len(sizes):
        raise ValueError(f"the architecture sets split sizes `{name}` ({len(sizes)} pieces) "
                         f"but the network holds {old!r}: was the spec made for another "
                         "seed network?")  # fmt: skip
    setattr(model.get_submodule(owner_name), leaf, type(old)(sizes))


def _slice_parameter(model: nn.Module, name: str, entry: dict[str, Any]) -> None:
    owner_name, _, leaf = name.rpartition(".")
    try:
        owner = model.get_submodule(owner_name)
    except AttributeError as err:
        raise ValueError(f"the architecture names parameter `{name}`, absent from "
                         f"{type(model).__name__}") from err  # fmt: skip
    tensor = getattr(owner, leaf, None)
    if not isinstance(tensor, torch.Tensor) or list(tensor.shape) != entry["shape"]:
        found = None if tensor is None else list(getattr(tensor, "shape", []))
        raise ValueError(f"parameter `{name}` has shape {found} but the architecture expects "
                         f"{entry['shape']}: was the spec made for another seed network?")
    setattr(owner, leaf, slice_tensor(tensor, entry["dim"], entry["keep"]))


def _export_layer(layer: nn.Module, entry: dict[str, Any]) -> nn.Module:
    if isinstance(layer, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        return export_conv(layer, entry.get("in"), entry.get("out"), entry.get("taps"))
    if isinstance(layer, nn.Linear):
        return export_linear(layer, entry.get("in"), entry.get("out"))
    if isinstance(layer, _NORMS):
        return export_norm(layer, entry.get("keep"))
    if isinstance(layer, nn.GroupNorm):
        return export_group_norm(layer, entry.get("keep"))
    if isinstance(layer, nn.LayerNorm):
        return export_layer_norm(layer, entry.get("keep"))
    if isinstance(layer, nn.PReLU):
        return export_prelu(layer, entry.get("keep"))
    raise ValueError(f"cannot shrink a {type(layer).__name__}")
