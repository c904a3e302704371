"""Every configuration error of the callback, and when it is raised.

Two moments, as docs/CALLBACK.md ("Configuration errors") tabulates and
tests/callback/test_config_errors.py checks against this code:

* ``DNASCallback(...)``: what the arguments alone decide (method, stage list, cost,
  softmax, search mode, mode, a ``network=`` list) raises ``ValueError`` (``TypeError``
  for a cost of the wrong type), through :func:`build_stages`, :func:`check_arguments`,
  :func:`network_arg` and the engine's ``resolve_costs``.
* ``setup("fit")``: what needs the module or the trainer (the network, the example input,
  strengths against the costs, converter options against each stage's method, epochs,
  precision) raises Lightning's ``MisconfigurationException``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from lightning.pytorch import LightningModule
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import Tensor
from torch.fx.proxy import TraceError
from torchmetrics import Metric

from ..nas.graph.trace import UnsupportedModelError
from ..nas.methods import METHODS
from ..nas.supernet.combiner import MODES
from ..network_group import Network, holds, problem
from ..stages import Stage, default_stages, parse_stages
from .arch_step import stage_lambdas
from .clock import SEARCH_KINDS

SEARCH_MODES = ("joint", "alternating")
EXAMPLE_SAMPLES = 8  # samples of the first training batch kept as the example input

# -- DNASCallback(...) --------------------------------------------------------------------


def build_stages(method: str, stages: Sequence[Stage | Mapping[str, Any]] | None,
                 warmup_epochs: int, search_epochs: int, finetune_epochs: int,
                 patience: int | None, quantize: str | None = None) -> list[Stage]:  # fmt: skip
    """The parsed stage list: ``stages``, else ``warmup -> search -> fine-tune`` of
    ``method``; ``quantize`` makes the last stage, which must be a fine-tune,
    quantisation-aware. A ValueError names the valid methods or what is wrong with the
    list (:func:`~lightning_dnas.stages.parse_stages`)."""
    if stages is None:
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; valid methods: {list(METHODS)}")
        stages = default_stages(method, warmup_epochs, search_epochs, finetune_epochs,
                                patience)  # fmt: skip
    parsed = parse_stages(stages)
    if quantize is None:
        return parsed
    last = parsed[-1]
    if last.kind != "finetune":
        raise ValueError(f"quantize={quantize!r} needs a fine-tune as the last stage (the "
                         f"quantisation-aware fine-tune); the last stage is {last.name}")
    if last.quantize not in (None, quantize):
        raise ValueError(f"quantize={quantize!r} but the last stage {last.name} has "
                         f"quantize={last.quantize!r}")  # fmt: skip
    return parse_stages([*parsed[:-1], replace(last, quantize=quantize, name="")])


def network_arg(network: str | Sequence[str] | None) -> Network | None:
    """``network=`` as the callback keeps it: ``None``, one attribute path, or a list of
    several searched together (a list of one is that path). A ValueError for an empty
    list, a non-string entry or a repeated one."""
    if network is None or isinstance(network, str):
        return network
    names = list(network)
    if not names or not all(isinstance(n, str) for n in names) or len(set(names)) < len(names):
        raise ValueError(f"network must be an attribute path or a list of distinct paths, "
                         f"got {network!r}")  # fmt: skip
    return names[0] if len(names) == 1 else names


def check_arguments(softmax: str | None, search_mode: str, mode: str) -> None:
    """A ValueError naming the valid values, for an unknown ``softmax``, ``search_mode``
    or ``mode``."""
    if softmax is not None and softmax not in MODES:
        raise ValueError(f"unknown softmax {softmax!r}; valid: {list(MODES)}")
    if search_mode not in SEARCH_MODES:
        raise ValueError(f"unknown search_mode {search_mode!r}; valid: {list(SEARCH_MODES)}")
    if mode not in ("min", "max"):
        raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")


# -- setup("fit") -------------------------------------------------------------------------


def check_options(stages: Sequence[Stage], converter: Mapping[str, Any],
                  strength: float | Mapping[str, float], costs: Mapping[str, Any],
                  ) -> None:  # fmt: skip
    """Converter options against the method of each warmup and search stage (the
    registry's :attr:`~lightning_dnas.nas.methods.Method.converter_options`), and every
    strength (each stage's, the callback's) against the costs."""
    for stage in stages:
        if stage.kind in SEARCH_KINDS:
            allowed = METHODS[stage.method].converter_options  # type: ignore[index]
            bad = set(converter) - set(allowed)
            if bad:
                raise MisconfigurationException(
                    f"converter options {sorted(bad)} do not apply to method "
                    f"{stage.method!r}; valid: {list(allowed)}")
        if stage.strength is not None:
            stage_lambdas(strength, costs, stage)
    stage_lambdas(strength, costs, None)


def fit_epochs(stages: Sequence[Stage], max_epochs: int | None) -> int | None:
    """The ``max_epochs`` the fit must run with: the stages' sum when the trainer's is
    unset, infinite (< 0) or larger; ``None`` when it already is the sum. Fewer raise."""
    total = sum(s.epochs for s in stages)
    plan = ", ".join(f"{s.name} {s.epochs}" for s in stages)
    if max_epochs is not None and 0 <= max_epochs < total:
        raise MisconfigurationException(
            f"the DNAS stages need {total} epochs ({plan}) but Trainer(max_epochs="
            f"{max_epochs}); set max_epochs={total} or shorten the stages")
    if max_epochs is None or max_epochs < 0 or max_epochs > total:
        return total
    return None


def check_precision(grad_scaler: Any, automatic_optimization: bool, search_mode: str,
                    no_val_batches: bool) -> None:  # fmt: skip
    """fp16 grad scaling needs automatic optimization (the scale changes between the
    user's manual steps); an alternating search needs validation batches."""
    if grad_scaler is not None and not automatic_optimization:
        raise MisconfigurationException(
            "DNASCallback supports fp16 grad scaling with automatic optimization only; "
            "use bf16-mixed or 32-true with manual optimization")
    if search_mode == "alternating" and no_val_batches:
        raise MisconfigurationException("alternating search needs validation batches")


def _candidates(pl_module: LightningModule) -> list[str]:
    return [name for name, child in pl_module.named_children()
            if not isinstance(child, Metric)
            and any(p.requires_grad for p in child.parameters())]  # fmt: skip


def has_network(pl_module: LightningModule, network: Network | None) -> bool:
    """Whether the network is built: ``network`` is a submodule (a list: each is), or
    (``None``) some child holds trainable parameters."""
    if network is None:
        return bool(_candidates(pl_module))
    return holds(pl_module, network)


def check_networks(pl_module: Any, network: Network) -> None:
    """Several networks (``network`` a list) that the module cannot give: a name it does
    not have, one that is not an ``nn.Module``, one inside another."""
    if isinstance(network, str):
        return  # one path: get_submodule's own AttributeError, as before
    why = problem(pl_module, network)
    if why is not None:
        raise MisconfigurationException(
            f"DNASCallback: the networks {network} of {type(pl_module).__name__} cannot be "
            f"searched together: {why}")


@contextmanager
def group_trace_errors(pl_module: Any, network: Network) -> Iterator[None]:
    """Several networks are traced through the module's own ``forward``: a forward that
    does not trace (or reads an attribute outside the listed networks) says what to do."""
    try:
        yield
    except (UnsupportedModelError, TraceError, AttributeError) as err:
        if isinstance(network, str):
            raise
        raise MisconfigurationException(
            f"DNASCallback traces {type(pl_module).__name__}.forward over the networks "
            f"{network} and it does not trace: {err}. That forward may read only the listed "
            "networks of the module. Pass one network (network='<name>'), or mark the module "
            "that fails a leaf (converter={'leaf_modules': [...]})") from err


def find_network(pl_module: LightningModule) -> str:
    """The name of the one child module holding trainable parameters (torchmetrics
    metrics ignored)."""
    found = _candidates(pl_module)
    if not found:
        raise MisconfigurationException(
            f"{type(pl_module).__name__} has no child module with trainable parameters when "
            "DNASCallback converts it (in the callback's setup, after running the module's "
            "configure_model() if it has one): build the network in __init__ or "
            "configure_model(), then DNASCallback finds it (or pass network='<attribute>')")
    if len(found) != 1:
        raise MisconfigurationException(
            f"DNASCallback cannot tell which child of {type(pl_module).__name__} is the network "
            f"to search: children with trainable parameters: {found}; pass network='<name>'")
    return found[0]


def example_from_batch(batch: Any) -> Tensor:
    """The first element of a training batch (the batch itself if it is not a tuple or
    list), at most :data:`EXAMPLE_SAMPLES` samples, detached."""
    first = batch[0] if isinstance(batch, (tuple, list)) else batch
    if not isinstance(first, Tensor):
        raise MisconfigurationException(
            "DNASCallback could not take an example input from the first training batch "
            f"(its first element is a {type(first).__name__}); pass example_input= or set "
            "the module's example_input_array")
    return first[:EXAMPLE_SAMPLES].detach().clone()


@contextmanager
def example_errors(example: Any, source: str) -> Iterator[None]:
    """Turn an error of the network on the example input while converting (a shape or
    dtype mismatch: ``RuntimeError``) into one that says where the example came from and
    how to give another."""
    try:
        yield
    except RuntimeError as err:
        if isinstance(err, (MisconfigurationException, UnsupportedModelError)):
            raise  # not about the example: the network itself does not trace
        shape = list(example.shape) if isinstance(example, Tensor) else type(example).__name__
        raise MisconfigurationException(
            f"DNASCallback converts the network on an example input, and the network "
            f"failed on it: {err}. The example (shape {shape}) was {source}; if that is not "
            "what the network takes, pass DNASCallback(example_input=...) or set the "
            "module's example_input_array") from err


def already_searching(network: str) -> MisconfigurationException:
    """The error for a network that is already a search network when the callback meets
    it (it needs the seed network to convert and to rebuild checkpoints from)."""
    return MisconfigurationException(f"`{network}` is already a search network; "
                                     "give DNASCallback the seed network")  # fmt: skip


__all__ = [
    "SEARCH_MODES",
    "already_searching",
    "build_stages",
    "check_arguments",
    "check_networks",
    "check_options",
    "check_precision",
    "example_errors",
    "example_from_batch",
    "find_network",
    "fit_epochs",
    "group_trace_errors",
    "has_network",
    "network_arg",
]
