"""``SuperNetModule``: the user-facing coarse-grained choice between candidate modules."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .combiner import (
    HARD_MODES,
    icv,
    mixing_weights,
    validate_mode,
    validate_temperature,
)
from .memory_format import channels_last_helps, is_layout_free
from .mixing import AttachZeroGrads, HardMix, SoftMix, used_parameters

__all__ = [
    "EVAL_MODES",
    "SuperNetModule",
    "icv_loss",
    "set_softmax",
    "set_temperature",
    "supernet_modules",
]

EVAL_MODES: tuple[str, ...] = ("argmax", "soft")
"""Valid values of :attr:`SuperNetModule.eval_mode`."""


class SuperNetModule(nn.Module):
    """A layer that is a learnable choice between candidate modules (DARTS-like).

    The output is the mixture ``y = sum_i theta_i * candidate_i(x)`` where ``theta`` comes
    from the architecture logits :attr:`alpha` (one per candidate, initialised to ``1/n``
    each) according to :attr:`softmax` and :attr:`temperature` ``T`` (formulas in
    :mod:`lightning_dnas.nas.supernet.combiner`):

    - ``"softmax"``: ``theta = softmax(alpha / T)``;
    - ``"gumbel"``: ``theta = softmax((alpha + g) / T)``, ``g ~ Gumbel(0, 1)`` drawn anew
      each forward;
    - ``"hard_softmax"`` / ``"hard_gumbel"``: ``theta`` is the one-hot vector of the
      argmax of the same logits in the forward, with a straight-through gradient
      (``alpha`` gets a non-zero gradient in both hard modes).

    All candidates must return tensors of the same shape (the outputs are summed, so each
    candidate should carry its own BatchNorm/activation, thesis 5.1.1). The shapes are
    checked on every forward that runs more than one candidate (every training forward
    and ``eval_mode="soft"``); a mismatch raises ``ValueError`` naming each candidate and
    its output shape.

    **Hard-mode fast path.** In the hard modes the unselected candidates have weight 0 in
    the forward, so their own weights get a zero gradient and ``alpha`` only needs their
    outputs: ``d loss / d theta_i = <d loss / d y, y_i>``. They therefore run under
    ``torch.no_grad()`` (still in training mode, so their BatchNorm running statistics
    update exactly as in the full computation), the selected candidate runs with
    autograd, and the output is ``sum_i theta_i * y_i`` with ``y_i`` detached for
    ``i != selected``. The gradient of ``alpha`` and of every weight equals that of the
    full computation (all candidates under autograd); unselected weights receive
    all-zero gradient tensors (not ``None``), so momentum and weight decay behave as in
    the full computation. The selected index is read on the host (one device sync).
    With :attr:`channels_last_unselected` (default on), unselected candidates made only
    of layout-free layers (:mod:`~lightning_dnas.nas.supernet.memory_format`: convolutions,
    BatchNorm, activations, pooling in ``nn.Sequential`` containers; not an Identity) get a
    channels_last copy of a default-format 4-D CPU input, where oneDNN runs them 2-3x
    faster; their
    outputs, BatchNorm statistics and ``alpha``'s gradient then differ from the
    default-format computation by rounding only; weight gradients are unaffected.

    **Evaluation** (``module.eval()``) follows :attr:`eval_mode`: ``"argmax"`` (default)
    runs only :meth:`chosen`, the candidate that export keeps, so validation during the
    search shows the accuracy of the exported architecture; ``"soft"`` returns the
    mixture with ``theta = softmax(alpha / T)``, without noise, in every mode.

    **Under torch.compile** the candidate to run cannot depend on ``alpha`` without a
    graph break per choice, so the hard modes and ``eval_mode="argmax"`` run every
    candidate and mix them with the one-hot ``theta``: same outputs and gradients (the
    unselected weights get their zero gradients from the mixing's backward), but
    without the fast path's savings; the temperature is read from a tensor, so that a
    temperature schedule does not recompile.

    Args:
        candidates: the alternatives, all ``nn.Module`` (``nn.Identity`` and blocks with
            their own BatchNorm included), as a sequence (named ``"0"``, ``"1"``, ...) or
            a ``name -> module`` mapping (names kept, in the mapping's order). At least 2.
        softmax: initial mode, one of ``"softmax"`` (default), ``"gumbel"``,
            ``"hard_softmax"``, ``"hard_gumbel"``.
        temperature: initial ``T > 0`` (default 1.0).
        eval_mode: ``"argmax"`` (default) or ``"soft"``.
        channels_last_unselected: run the hard-mode fast path's unselected candidates in
            channels_last where that is possible and faster (default ``True``; ``False``
            keeps the input's memory format).

    Attributes:
        candidates: the candidates as an ``nn.ModuleDict``.
        names: candidate names, in order (index ``i`` of ``alpha`` is ``names[i]``).
        alpha: the architecture logits, an ``nn.Parameter`` of shape ``(n,)``.
        last_theta: the ``theta`` used by the last forward (``None`` before the first),
            still attached to the autograd graph after a training forward, for the
            thesis' "sampled theta" cost option.
        channels_last_unselected: see Args; settable at any time.
    """

    # Class-level default too: a module pickled before the option existed still runs.
    channels_last_unselected: bool = True

    def __init__(
        self,
        candidates: Sequence[nn.Module] | Mapping[str, nn.Module],
        softmax: str = "softmax",
        temperature: float = 1.0,
        eval_mode: str = "argmax",
        channels_last_unselected: bool = True,
    ) -> None:
        super().__init__()
        if isinstance(candidates, Mapping):
            items = [(str(k), v) for k, v in candidates.items()]
        elif isinstance(candidates, nn.Module):
            raise TypeError(
                "candidates must be a list or a name->module dict, not a single module "
                f"({type(candidates).__name__})"
            )
        else:
            items = [(str(i), m) for i, m in enumerate(candidates)]
        if len(items) < 2:
            raise ValueError(f"a SuperNetModule needs at least 2 candidates, got {len(items)}")
        for name, module in items:
            if not isinstance(module, nn.Module):
                raise TypeError(
                    f"candidate {name!r} is a {type(module).__name__}, not an nn.Module"
                )
        self.candidates = nn.ModuleDict(items)
        self.names: list[str] = [name for name, _ in items]
        n = len(items)
        self.alpha = nn.Parameter(torch.full((n,), 1.0 / n))
        self.softmax = softmax
        # The temperature as a tensor too, read under torch.compile: a Python float on the
        # module would be a guarded constant (one recompilation per scheduled value).
        self.register_buffer("_temperature_t", torch.ones(()), persistent=False)
        self.temperature = temperature
        self.eval_mode = eval_mode
        self.channels_last_unselected = bool(channels_last_unselected)
        self.last_theta: Tensor | None = None

    @property
    def softmax(self) -> str:
        """Mode that turns ``alpha`` into ``theta`` (one of ``MODES``; else ``ValueError``)."""
        return self._softmax

    @softmax.setter
    def softmax(self, mode: str) -> None:
        self._softmax = validate_mode(mode)

    @property
    def temperature(self) -> float:
        """Temperature ``T > 0`` dividing the logits; settable at any time (else ``ValueError``)."""
        return self._temperature

    @temperature.setter
    def temperature(self, value: float) -> None:
        self._temperature = validate_temperature(value)
        held = self._buffers.get("_temperature_t")  # absent in modules pickled before it
        if held is not None:
            with torch.no_grad():
                held.fill_(self._temperature)

    def _divisor(self) -> float | Tensor:
        """``T`` as the logits' divisor: the float in eager mode (bit-identical to earlier
        versions), the tensor copy under ``torch.compile`` (no guard on its value)."""
        held = self._buffers.get("_temperature_t")
        return held if held is not None and torch.compiler.is_compiling() else self._temperature

    @property
    def eval_mode(self) -> str:
        """Evaluation behaviour, ``"argmax"`` (only :meth:`chosen` runs) or ``"soft"``."""
        return self._eval_mode

    @eval_mode.setter
    def eval_mode(self, value: str) -> None:
        if value not in EVAL_MODES:
            raise ValueError(f"unknown eval_mode {value!r}; allowed values are {list(EVAL_MODES)}")
        self._eval_mode = value

    def probabilities(self) -> Tensor:
        """Expected distribution ``p = softmax(alpha / T)`` (differentiable, noise-free).

        This is what costs and :meth:`icv` use by default: the expected cost is
        ``sum_i p_i * cost(candidate_i)``.
        """
        return F.softmax(self.alpha / self._divisor(), dim=-1)

    def theta(self) -> Tensor:
        """The weights the next forward uses, in the current mode and train/eval state.

        Training: :func:`~lightning_dnas.nas.supernet.combiner.mixing_weights` of
        ``alpha`` (a fresh Gumbel sample in the Gumbel modes, so it differs from
        :attr:`last_theta` there). Evaluation: ``one_hot(argmax(alpha))`` (constant) for
        ``eval_mode="argmax"``, :meth:`probabilities` for ``eval_mode="soft"``.
        """
        if self.training:
            return mixing_weights(self.alpha, self.softmax, self._divisor())
        if self.eval_mode == "soft":
            return self.probabilities()
        return F.one_hot(self.alpha.detach().argmax(), len(self.names)).to(self.alpha.dtype)

    def argmax(self) -> int:
        """Index of the largest logit (the first one on ties): the candidate export keeps."""
        return int(self.alpha.detach().argmax())

    def chosen(self) -> nn.Module:
        """The candidate module at :meth:`argmax`."""
        return self.candidates[self.names[self.argmax()]]

    def icv(self, eps: float = 1e-3, sampled: bool = False) -> Tensor:
        """ICV polarisation loss ``mean(w)^2 / (var(w) + eps)`` of this module.

        ``w`` is :meth:`probabilities` by default, or :attr:`last_theta` (the sampled
        weights of the last forward, as in the thesis) when ``sampled`` is true.
        """
        if not sampled:
            return icv(self.probabilities(), eps)
        if self.last_theta is None:
            raise RuntimeError("icv(sampled=True) needs a forward pass first (last_theta is None)")
        return icv(self.last_theta, eps)

    def forward(self, x: Tensor) -> Tensor:
        """Return ``sum_i theta_i * candidate_i(x)`` (see the class docstring for eval and
        for ``torch.compile``)."""
        # Under torch.compile the choice of candidate must not be a Python value read
        # from alpha (``int(argmax)``): that is a graph break in every choice and one
        # recompilation per choice and per selected index. The one-hot theta of the hard
        # modes and of argmax evaluation then mixes all candidates instead, which gives
        # the same output (``1 * y_selected + 0 * y_others``) and the same gradients.
        compiling = torch.compiler.is_compiling()
        if not self.training and self.eval_mode == "argmax" and not compiling:
            self.last_theta = self.theta()
            return self.chosen()(x)
        theta = self.theta()
        self.last_theta = theta
        modules = list(self.candidates.values())
        if compiling or not (self.training and self.softmax in HARD_MODES):
            return self._mix(theta.unbind(), [m(x) for m in modules])
        return self._hard_forward(x, theta, modules)

    def _hard_forward(self, x: Tensor, theta: Tensor, modules: list[nn.Module]) -> Tensor:
        """The hard-mode fast path (class docstring): the selected candidate under
        autograd, the others under ``no_grad``, zero gradients for their weights."""
        selected = int(theta.detach().argmax())
        # Trainable weights of the unselected candidates only (a weight shared with the
        # selected candidate gets its real gradient from there), each once.
        chosen_ids = {id(p) for p in used_parameters(modules[selected])}
        others = {
            id(p): p
            for i, m in enumerate(modules)
            if i != selected
            for p in used_parameters(m)
            if p.requires_grad and id(p) not in chosen_ids
        }
        if others and torch.is_grad_enabled():
            theta = AttachZeroGrads.apply(theta, *others.values())
        inputs = self._unselected_inputs(x, modules, selected)
        outputs = []
        for i, m in enumerate(modules):
            if i == selected:
                outputs.append(m(x))
            else:
                with torch.no_grad():
                    y = m(inputs[i])
                # detach: nn.Identity returns x itself, still attached to the graph
                outputs.append(y.detach() if isinstance(y, Tensor) else y)
        self._check_shapes(outputs)
        return HardMix.apply(theta, selected, *outputs)

    def _unselected_inputs(self, x: Tensor, modules: list[nn.Module],
                           selected: int) -> list[Tensor]:  # fmt: skip
        """The input of each candidate's no-grad run: a channels_last copy of ``x`` (made
        once) for the unselected layout-free candidates that compute something (an
        Identity returns its input as it is), ``x`` for the others
        (:attr:`channels_last_unselected`)."""
        if not (self.channels_last_unselected and channels_last_helps(x)):
            return [x] * len(modules)
        converts = [
            i != selected and not isinstance(m, nn.Identity) and is_layout_free(m)
            for i, m in enumerate(modules)
        ]
        if not any(converts):
            return [x] * len(modules)
        fast = x.contiguous(memory_format=torch.channels_last)
        return [fast if c else x for c in converts]

    def _mix(self, weights: Sequence[Tensor], outputs: list[Tensor]) -> Tensor:
        """``sum_i weights[i] * outputs[i]`` after checking that all shapes agree."""
        self._check_shapes(outputs)
        return SoftMix.apply(torch.stack(list(weights)), *outputs)

    def _check_shapes(self, outputs: list[Any]) -> None:
        shapes = [tuple(y.shape) if isinstance(y, Tensor) else None for y in outputs]
        if None in shapes or any(s != shapes[0] for s in shapes):
            listing = ", ".join(
                f"{name!r}: {shape if shape is not None else type(y).__name__}"
                for name, shape, y in zip(self.names, shapes, outputs, strict=True)
            )
            raise ValueError(
                "SuperNetModule candidates must all return tensors of the same shape; "
                f"got {listing}"
            )

    def __getstate__(self) -> dict[str, Any]:
        """Copy/pickle state with ``last_theta`` detached: a tensor still attached to the
        autograd graph cannot be deep-copied, and the graph is not part of the module."""
        state = dict(self.__dict__)
        if isinstance(state.get("last_theta"), Tensor):
            state["last_theta"] = state["last_theta"].detach()
        return state

    def extra_repr(self) -> str:
        """Mode, temperature, eval mode and candidate names, for ``repr``."""
        return (
            f"softmax={self.softmax!r}, temperature={self.temperature:g}, "
            f"eval_mode={self.eval_mode!r}, names={self.names}"
        )


def supernet_modules(model: nn.Module) -> Iterator[SuperNetModule]:
    """Yield every :class:`SuperNetModule` in ``model`` (``model`` itself included)."""
    for module in model.modules():
        if isinstance(module, SuperNetModule):
            yield module


def set_softmax(model: nn.Module, mode: str) -> int:
    """Set :attr:`SuperNetModule.softmax` on all SuperNet modules of ``model``.

    The mode is validated first (``ValueError`` listing the allowed ones), even when
    ``model`` has no SuperNet module. Returns the number of modules changed.
    """
    validate_mode(mode)
    count = 0
    for module in supernet_modules(model):
        module.softmax = mode
        count += 1
    return count


def set_temperature(model: nn.Module, temperature: float) -> int:
    """Set :attr:`SuperNetModule.temperature` on all SuperNet modules of ``model``.

    The value is validated first (finite, ``> 0``). Returns the number of modules changed.
    """
    temperature = validate_temperature(temperature)
    count = 0
    for module in supernet_modules(model):
        module.temperature = temperature
        count += 1
    return count


def icv_loss(model: nn.Module, eps: float = 1e-3, sampled: bool = False) -> Tensor:
    """ICV regulariser of a model: ``sum`` of ``module.icv(eps, sampled)`` over its SuperNets.

    Returns a zero tensor when ``model`` has no SuperNet module.
    """
    terms = [m.icv(eps, sampled) for m in supernet_modules(model)]
    if not terms:
        return torch.zeros(())
    return torch.stack(terms).sum()
