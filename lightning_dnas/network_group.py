"""Several modules of one owner searched as one network (``network=["backbone", "head"]``).

The engine converts one module and traces its ``forward``. For a backbone and a head wired
together in a LightningModule's ``forward``, :func:`group_of` builds a
:class:`NetworkGroup`: a module holding the owner's listed modules at the same attribute
paths, whose ``forward`` *is* the owner class's ``forward``. Tracing it follows the
channels from the backbone into the head, so their groups are shared (the head's
``in_features`` shrink with the backbone's last output channels). After a conversion or an
export, :func:`place` puts each part back at its attribute, so the owner's own ``forward``
still calls ``self.backbone(x)`` and ``self.head(...)``.

A path (``str``) is the single-network case, unchanged: :func:`gather` and :func:`place`
then get and set that one submodule.

Quantisation-aware training prepares each part on its own (:func:`prepare_qat_parts`):
torch.fx would trace the owner's ``forward`` into one graph that no attribute could hold,
so each part becomes a :class:`~lightning_dnas.quantize.QATNetwork` traced on the input
the group's ``forward`` gives it (:func:`part_inputs`), and the glue between the parts in
the owner's ``forward`` (a mean, a reshape) stays float.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .nas.engine import DNAS
from .nas.modules import set_submodule

Network = str | list[str]
"""Where the searched network lives in its owner: one attribute path, or several."""

MASKS = "_dnas_masks"
"""Attribute of the owner holding a grouped search network's channel and tap masks (so
they are the owner's parameters: in its ``state_dict``, moved by ``.to()``, seen by DDP)."""

_CLASSES: dict[type, type] = {}


class NetworkGroup(nn.Module):
    """Base of the per-owner-class groups :func:`group_of` builds (their ``forward`` is the
    owner class's)."""

    names: tuple[str, ...] = ()


def group_class(owner_type: type) -> type:
    """The :class:`NetworkGroup` subclass whose ``forward`` is ``owner_type.forward``
    (one per owner class, so deep copies and repeated groups share it)."""
    if owner_type not in _CLASSES:
        _CLASSES[owner_type] = type(f"{owner_type.__name__}Networks", (NetworkGroup,),
                                    {"forward": owner_type.forward,
                                     "__module__": __name__})  # fmt: skip
    return _CLASSES[owner_type]


def group_of(owner: nn.Module, names: Sequence[str]) -> NetworkGroup:
    """A :class:`NetworkGroup` holding ``owner``'s modules at ``names`` (the modules
    themselves, not copies), at the same dotted paths (intermediate holders are plain
    ``nn.Module``\\ s)."""
    group = group_class(type(owner))()
    group.names = tuple(names)
    group.training = owner.training
    for name in names:
        parts = name.split(".")
        holder: nn.Module = group
        for part in parts[:-1]:
            if part not in holder._modules:
                holder.add_module(part, nn.Module())
            holder = holder._modules[part]  # type: ignore[assignment]
        holder.add_module(parts[-1], owner.get_submodule(name))
    return group


def gather(owner: nn.Module, network: Network) -> nn.Module:
    """The network at ``network`` in ``owner``: the submodule, or a group of several."""
    if isinstance(network, str):
        return owner.get_submodule(network)
    return group_of(owner, network)


def place(owner: nn.Module, network: Network, net: nn.Module) -> None:
    """Put ``net`` (a plain network, or its search wrapper) where ``network`` says in
    ``owner``. For several modules: each part of the group into its attribute, and a search
    wrapper's masks into ``owner.<MASKS>`` (removed again for a plain network)."""
    if isinstance(network, str):
        set_submodule(owner, network, net)
        return
    group = net.net if isinstance(net, DNAS) else net
    for name in network:
        set_submodule(owner, name, group.get_submodule(name))
    if isinstance(net, DNAS):
        # The MaskBank pre-hook binarizes all masks once at the start of the group's
        # forward, which the owner's own forward never calls: its cached values would go
        # stale (an old pass's autograd graph). Without it each mask binarizes itself.
        group._forward_pre_hooks.pop(net._bank_hook, None)
        net._bank.disconnect()
        setattr(owner, MASKS, nn.ModuleDict({"channel_masks": net.channel_masks,
                                             "tap_masks": net.tap_masks}))  # fmt: skip
    elif MASKS in owner._modules:
        delattr(owner, MASKS)


def holds(owner: nn.Module, network: Network) -> bool:
    """Whether ``owner`` has the submodule ``network`` (a list: each of them)."""
    try:
        for path in [network] if isinstance(network, str) else network:
            owner.get_submodule(path)
    except AttributeError:
        return False
    return True


def problem(owner: nn.Module, names: Sequence[str]) -> str | None:
    """Why ``names`` cannot be searched together in ``owner`` (``None``: they can): a name
    the owner does not have, one that is not an ``nn.Module``, one inside another."""
    for name in names:
        obj: Any = owner
        for i, part in enumerate(name.split(".")):
            if not hasattr(obj, part):
                where = ".".join(name.split(".")[:i]) or type(owner).__name__
                children = [n for n, _ in obj.named_children()] if isinstance(
                    obj, nn.Module) else []  # fmt: skip
                return (f"`{name}`: {where} has no attribute `{part}` (its child modules: "
                        f"{children})")
            obj = getattr(obj, part)
        if not isinstance(obj, nn.Module):
            return f"`{name}` is a {type(obj).__name__}, not an nn.Module"
    for a in names:
        for b in names:
            if a != b and b.startswith(a + "."):
                return f"`{b}` is inside `{a}`: list each module once"
    return None


def part_inputs(group: NetworkGroup, example: Any) -> dict[str, tuple[Any, ...]]:
    """The positional arguments each part of ``group`` is called with when the group runs
    on ``example`` (in eval mode, without gradients: no BatchNorm statistic or observer
    range moves; the modes are set back after). A part called twice: its first call.
    A ValueError names a part the group's ``forward`` does not call, or calls with
    keyword arguments."""
    seen: dict[str, tuple[Any, ...]] = {}
    hooks = []
    for name in group.names:

        def record(module: nn.Module, args: tuple, kwargs: dict, name: str = name) -> None:
            if kwargs:
                raise ValueError(f"`{name}` is called with keyword arguments {sorted(kwargs)}: "
                                 "its quantisation-aware version takes positional inputs")
            seen.setdefault(name, args)

        hooks.append(group.get_submodule(name).register_forward_pre_hook(record,
                                                                          with_kwargs=True))
    modes = {m: m.training for m in group.modules()}
    try:
        group.eval()
        with torch.no_grad():
            group(example)
    finally:
        for hook in hooks:
            hook.remove()
        for module, mode in modes.items():
            module.training = mode
    missing = [n for n in group.names if n not in seen]
    if missing:
        raise ValueError(f"the forward of {type(group).__name__} does not call {missing}")
    return seen


def prepare_qat_parts(group: NetworkGroup, example: Any, quantize: str) -> NetworkGroup:
    """``group`` with each part replaced by its quantisation-aware version
    (:func:`~lightning_dnas.quantize.prepare_qat` of a copy of the part, traced and
    calibrated on the input :func:`part_inputs` finds for it); returns ``group``. A part
    must take one tensor (its int8 ONNX has one input): else a
    :class:`~lightning_dnas.quantize.QuantizationError` naming it."""
    from .quantize.qat import QuantizationError, prepare_qat  # torch.ao: only when needed

    for name, args in part_inputs(group, example).items():
        if len(args) != 1 or not isinstance(args[0], Tensor):
            raise QuantizationError(
                f"`{name}` is called with {len(args)} inputs of types "
                f"{[type(a).__name__ for a in args]}: a quantisation-aware part takes one "
                "tensor (quantize one network, or list modules that each take one tensor)")
        set_submodule(group, name, prepare_qat(group.get_submodule(name), args[0], quantize))
    return group


__all__ = ["MASKS", "Network", "NetworkGroup", "gather", "group_class", "group_of",
           "part_inputs", "place", "prepare_qat_parts", "problem"]
