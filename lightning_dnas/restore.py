"""Checkpoints that carry their own network structure, and ``restore`` to load them.

During a DNAS fit the network inside the LightningModule changes structure: the seed is
converted into a search network (new mask parameters, wrapped layers), exported (smaller
layers, choices replaced by candidates), maybe converted again (cascade). A checkpoint's
weights only load into the structure that wrote them, and Lightning restores weights
*before* any callback state. So the structure travels inside the weights: the
LightningModule's ``state_dict`` gets one extra entry, ``STATE_KEY``, a JSON string
describing how to rebuild the network from the seed (the architectures exported so far and
the search method in use, if any), and a ``load_state_dict`` pre-hook rebuilds that
structure before the weights are copied. This is NNI's "apply the architecture before
loading the weights" done by the checkpoint itself.
"""

from __future__ import annotations

import copy
import importlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import torch
from torch import nn

from .nas.engine import DNAS
from .nas.methods import get_method
from .nas.modules import set_submodule
from .nas.spec import apply_arch
from .network_group import Network, NetworkGroup, gather, group_of, holds, place, prepare_qat_parts

# The entry's name is its own error message: a loader without the structure hooks
# (``Module.load_from_checkpoint``, a Trainer without the callback) reports it verbatim as
# ``Unexpected key(s) in state_dict: "<STATE_KEY>"``, and no lightning_dnas code runs there
# to say anything else. ``LEGACY_STATE_KEY``: the name checkpoints written before had.
STATE_KEY = ("_lightning_dnas: this is a lightning_dnas checkpoint: use "
             "lightning_dnas.restore(module, path)")  # fmt: skip
LEGACY_STATE_KEY = "_lightning_dnas"
FORMAT = "lightning_dnas.structure/1"


@dataclass
class NetworkStructure:
    """How to rebuild the current network from the seed.

    ``network``: dotted path of the network inside the LightningModule, or a list of them
    (several modules searched as one: :mod:`lightning_dnas.network_group`); ``applied``: the
    architecture specs exported so far, oldest first (each one applied to the result of the
    previous); ``method`` and ``options``: the search wrapper in use (``None`` for a plain
    network) and its structural converter options; ``example``: shape and dtype of the
    example input (enough to trace when no real input is at hand); ``quantize``: the plain
    network under quantisation-aware training (:func:`~lightning_dnas.quantize.prepare_qat`)
    or ``None``.
    """

    network: Network
    applied: list[dict[str, Any]] = field(default_factory=list)
    method: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    example: dict[str, Any] = field(default_factory=dict)
    quantize: str | None = None

    def to_json(self) -> str:
        """The structure as a JSON string (what the checkpoint stores); ``quantize`` only
        when set, so float structures read and compare as before it existed."""
        data = {"format": FORMAT, "network": self.network, "applied": self.applied,
                "method": self.method, "options": self.options, "example": self.example}
        if self.quantize is not None:
            data["quantize"] = self.quantize
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> NetworkStructure:
        """Parse :meth:`to_json` output; a ValueError names what is wrong."""
        data = json.loads(text)
        if data.get("format") != FORMAT:
            raise ValueError(f"unknown lightning_dnas structure format {data.get('format')!r}")
        return cls(data["network"], data["applied"], data["method"], data["options"],
                   data["example"], data.get("quantize"))  # fmt: skip


def encode_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Converter options as JSON: module types become ``{"type": "pkg.mod:Class"}``."""

    def enc(value: Any) -> Any:
        if isinstance(value, type):
            return {"type": f"{value.__module__}:{value.__qualname__}"}
        if isinstance(value, (list, tuple)):
            return [enc(v) for v in value]
        return value

    return {k: enc(v) for k, v in options.items()}


def decode_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`encode_options`."""

    def dec(value: Any) -> Any:
        if isinstance(value, dict) and set(value) == {"type"}:
            module, _, qualname = value["type"].partition(":")
            obj: Any = importlib.import_module(module)
            for part in qualname.split("."):
                obj = getattr(obj, part)
            return obj
        if isinstance(value, list):
            return [dec(v) for v in value]
        return value

    return {k: dec(v) for k, v in options.items()}


def example_record(example: Any) -> dict[str, Any]:
    """Shape and dtype of a tensor example input (a tuple: of each tensor)."""
    items = example if isinstance(example, (tuple, list)) else (example,)
    return {"shapes": [list(t.shape) for t in items],
            "dtypes": [str(t.dtype).removeprefix("torch.") for t in items]}  # fmt: skip


def example_from_record(record: Mapping[str, Any]) -> Any:
    """A zero tensor (or tuple) of the recorded shapes: enough to trace and convert."""
    tensors = tuple(torch.zeros(s, dtype=getattr(torch, d))
                    for s, d in zip(record["shapes"], record["dtypes"], strict=True))  # fmt: skip
    return tensors[0] if len(tensors) == 1 else tensors


def build_network(
    seed: nn.Module, structure: NetworkStructure, example: Any, cost: Any = "params"
) -> nn.Module:
    """A new network of the recorded structure: a copy of ``seed`` with every recorded
    architecture applied in turn, then converted with the recorded search method (if any).
    The weights are the seed's; a checkpoint's ``state_dict`` fits it exactly. A
    quantised structure is the plain network prepared for quantisation-aware training
    (several modules, ``seed`` their group: each part prepared on its own,
    :func:`~lightning_dnas.network_group.prepare_qat_parts`)."""
    net = copy.deepcopy(seed)
    for spec in structure.applied:
        net = apply_arch(net, spec)
    if structure.quantize is not None:
        if isinstance(net, NetworkGroup):  # several modules: each part prepared on its own
            return prepare_qat_parts(net, example, structure.quantize)
        from .quantize.qat import prepare_qat  # torch.ao's QAT flow: only when needed

        return prepare_qat(net, example, structure.quantize)
    if structure.method is None:
        return net
    method = get_method(structure.method).cls
    return method(net, example, cost=cost, **decode_options(structure.options))


class StructureKeeper:
    """State-dict hooks on a LightningModule (or any module holding the network) that write
    the current :class:`NetworkStructure` into its ``state_dict`` and rebuild it from a
    loaded ``state_dict`` before the weights are copied.

    ``seed`` is an untrained copy of the seed network (structure only matters), ``example``
    the example input for conversions (``None``: zeros of the checkpoint's recorded
    example shape), ``cost`` the cost given to rebuilt search wrappers,
    ``on_rebuild`` an optional function called with the new network.
    """

    def __init__(
        self, seed: nn.Module, structure: NetworkStructure, example: Any,
        cost: Any = "params", on_rebuild: Any = None,
    ) -> None:  # fmt: skip
        self.seed = seed
        self.structure = structure
        self.example = example
        self.cost = cost
        self.on_rebuild = on_rebuild

    def attach(self, owner: nn.Module) -> None:
        """Register the save and load hooks on ``owner``."""
        owner.register_state_dict_post_hook(_SaveHook(self))
        owner.register_load_state_dict_pre_hook(_LoadHook(self))

    def rebuild(self, owner: nn.Module, structure: NetworkStructure) -> nn.Module:
        """Replace the network inside ``owner`` by a fresh one of ``structure``."""
        example = self.example if self.example is not None else example_from_record(
            structure.example)  # fmt: skip
        net = build_network(self.seed, structure, example, self.cost)
        place(owner, structure.network, net)
        self.structure = structure
        if self.on_rebuild is not None:
            self.on_rebuild(net)
        return net


class _SaveHook:
    """``state_dict`` post-hook: adds the structure entry (a callable object, because torch
    marks public hooks with an attribute and bound methods take none)."""

    def __init__(self, keeper: StructureKeeper) -> None:
        self.keeper = keeper

    def __call__(self, module: nn.Module, state_dict: dict[str, Any], prefix: str,
                 local_metadata: Any) -> None:  # fmt: skip
        state_dict[prefix + STATE_KEY] = self.keeper.structure.to_json()


class _LoadHook:
    """``load_state_dict`` pre-hook: pops the structure entry and rebuilds the network when
    the checkpoint's structure differs from the current one."""

    def __init__(self, keeper: StructureKeeper) -> None:
        self.keeper = keeper

    def __call__(self, module: nn.Module, state_dict: dict[str, Any], prefix: str,
                 *args: Any) -> None:  # fmt: skip
        text = state_dict.pop(prefix + STATE_KEY, None)
        legacy = state_dict.pop(prefix + LEGACY_STATE_KEY, None)
        text = legacy if text is None else text
        if text is None:
            return
        structure = NetworkStructure.from_json(text)
        if structure.to_json() != self.keeper.structure.to_json():
            self.keeper.rebuild(module, structure)


NETWORK_FORMAT = "lightning_dnas.network/1"


def save_network(net: nn.Module, structure: NetworkStructure,
                 path: str | Path | IO[bytes]) -> None:
    """Write ``net`` (the plain network of ``structure``) as a file that
    ``torch.load``'s default ``weights_only=True`` reads: the structure as JSON (the
    architectures applied to the seed, in order) and the ``state_dict``, no pickled class.
    :func:`load_network` rebuilds the network from a fresh seed."""
    torch.save({"format": NETWORK_FORMAT, "structure": structure.to_json(),
                "state_dict": net.state_dict()}, path)  # fmt: skip


def load_network(seed: nn.Module, path: str | Path) -> nn.Module:
    """The network :func:`save_network` wrote, rebuilt from ``seed`` (the network as first
    built, e.g. ``ResNet8()``; left unchanged; for several modules searched together the
    module holding them, e.g. a fresh LightningModule, and the result is their
    :class:`~lightning_dnas.network_group.NetworkGroup`): a copy with the recorded architectures
    applied (and prepared for quantisation-aware training if it was), its weights loaded
    strictly. The file is read with ``weights_only=True``."""
    data = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(data, dict) or data.get("format") != NETWORK_FORMAT:
        raise ValueError(f"{path} is not a lightning_dnas network file ({NETWORK_FORMAT})")
    structure = NetworkStructure.from_json(data["structure"])
    if isinstance(structure.network, list):  # several modules: rebuilt as their group
        seed = group_of(seed, structure.network)
    net = build_network(seed, structure, example_from_record(structure.example))
    net.load_state_dict(data["state_dict"])
    return net


def restore(module: nn.Module, ckpt_path: str | Path, cost: Any = "params") -> nn.Module:
    """Load a checkpoint written during a DNAS fit into ``module``, without the callback.

    ``module`` is either the LightningModule (holding a fresh seed network where the fit
    held it) or the seed network itself. Its network is first rebuilt in the structure the
    checkpoint was taken in (exported architectures applied; converted if the checkpoint is
    from a warmup or search stage, then a search wrapper with ``cost``), then the weights
    are loaded strictly. Returns ``module`` (a LightningModule) or the rebuilt network.
    """
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    state = ckpt.get("state_dict", ckpt)
    if LEGACY_STATE_KEY in state:  # a checkpoint written before the key was renamed
        state = {STATE_KEY if k == LEGACY_STATE_KEY else k: v for k, v in state.items()}
    if STATE_KEY not in state:
        raise ValueError(f"{ckpt_path} holds no lightning_dnas structure entry "
                         f"({STATE_KEY!r}): was it written by a DNASCallback fit?")  # fmt: skip
    structure = NetworkStructure.from_json(state[STATE_KEY])
    example = example_from_record(structure.example)
    whole = holds(module, structure.network)
    if isinstance(structure.network, list) and not whole:
        raise ValueError(f"{ckpt_path} searched several modules together "
                         f"({structure.network}): restore it into the module holding them")
    seed = gather(module, structure.network) if whole else module
    if isinstance(seed, DNAS):
        raise ValueError("restore() needs the seed network (as first built), not a search "
                         "wrapper")  # fmt: skip
    keeper = StructureKeeper(copy.deepcopy(seed), NetworkStructure(structure.network), example,
                             cost)  # fmt: skip
    if whole:
        keeper.attach(module)
        module.load_state_dict(state)
        return module
    holder = nn.Module()
    set_submodule(holder, structure.network.split(".")[0], nn.Module())
    set_submodule(holder, structure.network, seed)
    keeper.attach(holder)
    prefix = structure.network + "."
    holder.load_state_dict({STATE_KEY: state[STATE_KEY],
                            **{k: v for k, v in state.items() if k.startswith(prefix)}})
    return holder.get_submodule(structure.network)

