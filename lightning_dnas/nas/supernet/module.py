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


def _promoted(ys: Sequence[Tensor]) -> torch.dtype:
    """The dtype of ``sum_i theta_i * y_i``: the promotion of the outputs' dtypes."""
    dtype = ys[0].dtype
    for y in ys[1:]:
        dtype = torch.promote_types(dtype, y.dtype)
    return dtype


def _memory_order(t: Tensor) -> list[int]:
    """``t``'s dimensions from the largest stride to the smallest: permuted this way, a
    dense tensor in any memory format (channels_last included) is contiguous, so it
    flattens without a copy."""
    return sorted(range(t.dim()), key=lambda d: -t.stride(d))


def _theta_grad(grad: Tensor, ys: Sequence[Tensor]) -> Tensor:
    """``(<grad, y_i>)_i``: one dot product per candidate, accumulated in float32 at least
    (low-precision dots over a whole feature map would lose the gradient).

    Both tensors are flattened in ``y_i``'s memory order (the same permutation of both
    leaves the pairing of elements unchanged), so channels_last outputs are not copied
    into the default order; ``grad`` is flattened once per distinct memory order.
    """
    acc = torch.promote_types(grad.dtype, torch.float32)
    flat_grads: dict[tuple[int, ...], tuple[list[int], Tensor]] = {}
    dots = []
    for y in ys:
        if y.stride() not in flat_grads:
            order = _memory_order(y)
            flat_grads[y.stride()] = (order, grad.permute(order).reshape(-1).to(acc))
        order, flat = flat_grads[y.stride()]
        dots.append(torch.dot(flat, y.permute(order).reshape(-1).to(acc)))
    return torch.stack(dots)


class _SoftMix(torch.autograd.Function):
    """``sum_i theta_i * y_i`` with fewer passes over the feature maps than the
    product-and-sum autograd graph: the forward accumulates ``out += theta_i * y_i`` in
    place (one pass per candidate), the backward gives ``theta_i`` the dot product
    ``<g, y_i>`` (no product tensor, no separate reduction) and ``y_i`` the gradient
    ``theta_i * g``."""

    @staticmethod
    def forward(ctx: Any, theta: Tensor, *ys: Tensor) -> Tensor:
        """Return ``sum_i theta_i * ys[i]``; keep ``theta`` and the outputs for backward."""
        # 0-dim weights (not Python floats): no device synchronisation on accelerators;
        # the result has the promoted dtype of the outputs, as the plain sum would (under
        # autocast an Identity candidate returns float32 beside bfloat16 convolutions).
        out = (ys[0] * theta[0]).to(_promoted(ys))
        for i in range(1, len(ys)):
            out.addcmul_(ys[i], theta[i])
        ctx.save_for_backward(theta, *ys)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        """``(<grad, y_i>)_i`` for ``theta``; ``theta_i * grad`` for each output."""
        theta, *ys = ctx.saved_tensors
        grads = [grad * theta[i] if ctx.needs_input_grad[1 + i] else None
                 for i in range(len(ys))]  # fmt: skip
        return (_theta_grad(grad, ys), *grads)


class _HardMix(torch.autograd.Function):
    """``sum_i theta_i * y_i`` for the exactly one-hot ``theta`` of the hard modes
    (:func:`~lightning_dnas.nas.supernet.combiner.mixing_weights` returns ``one_hot + (soft
    - soft.detach())``, whose forward value is exactly one-hot).

    Forward: a copy of ``y_selected`` (in the outputs' promoted dtype), which is what
    ``1 * y_selected + sum 0 * y_i`` gives (for finite outputs). Backward: ``theta_i`` gets
    its straight-through gradient ``<g, y_i>`` as one dot product per candidate (no product
    tensor, no reduction pass), the selected output gets ``g * theta_selected = g``. Same
    function and gradients as the sum of products (up to the summation order of the dot
    products), in about a quarter of the passes over the feature maps.
    """

    @staticmethod
    def forward(ctx: Any, theta: Tensor, selected: int, *ys: Tensor) -> Tensor:
        """Return a copy of ``ys[selected]``; keep every output for the backward."""
        ctx.selected = selected
        ctx.save_for_backward(*ys)
        return ys[selected].to(_promoted(ys), copy=True)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        """``(<grad, y_i>)_i`` for ``theta``; ``grad`` for the selected output."""
        ys = ctx.saved_tensors
        grads: list[Tensor | None] = [None] * len(ys)
        if ctx.needs_input_grad[2 + ctx.selected]:
            grads[ctx.selected] = grad
        return (_theta_grad(grad, ys), None, *grads)


def _used_parameters(module: nn.Module) -> Iterator[nn.Parameter]:
    """The parameters a candidate's forward uses: its own, and those its layers borrow
    (a layer may expose ``borrowed_parameters()``, e.g. PIT tap masks kept outside the
    network)."""
    # Runs for every candidate in every hard-mode training forward: read the registries
    # directly and look the method up on the class, since ``Module.parameters()`` and a
    # missed ``Module.__getattr__`` cost about ten times as much in Python overhead.
    for sub in module.modules():
        for p in sub._parameters.values():
            if p is not None:
                yield p
        borrowed = getattr(type(sub), "borrowed_parameters", None)
        if borrowed is not None:
            yield from borrowed(sub)


class _AttachZeroGrads(torch.autograd.Function):
    """Identity on ``theta`` whose backward also yields all-zero gradients for ``params``.

    Used by the hard-mode fast path for the parameters of the unselected candidates,
    which did not run under autograd. In the full computation their gradient is exactly
    zero (their output is scaled by ``theta_i`` whose forward value is 0), so handing
    autograd zero tensors reproduces it. Why on ``theta`` and not on the output: ``theta``
    has ``n`` entries, so the forward costs one ``n``-element copy and the backward only
    allocates the zero tensors that the full computation would allocate as well; the
    graph gains one node (``0 * p.sum()`` terms would add three nodes and a reduction
    over the weights per parameter), and the module's output stays an ordinary tensor
    (an identity Function on the output would return a view that later in-place ops,
    e.g. ``ReLU(inplace=True)``, may not modify). Since ``theta`` lies on every path from the output
    to the weights, the zeros arrive exactly when the full computation would produce
    them: with ``loss.backward()``, ``backward(inputs=...)`` and ``autograd.grad``
    alike, and DDP sees every parameter used (no ``find_unused_parameters`` needed).
    A hook that writes ``p.grad`` would skip autograd and get those cases wrong.
    """

    @staticmethod
    def forward(ctx: Any, theta: Tensor, *params: Tensor) -> Tensor:
        """Return a copy of ``theta``; remember the parameters (for their shape, dtype,
        device and memory format only, hence not ``save_for_backward``: the optimizer
        may update them in place before a later backward)."""
        ctx.params = params
        return theta.clone()

    @staticmethod
    def backward(ctx: Any, grad_theta: Tensor) -> tuple[Tensor, ...]:
        """Pass ``grad_theta`` through; a zero gradient for every parameter, in the
        parameter's memory format (a channels_last weight would otherwise get its zeros
        copied into that format by autograd's gradient accumulation)."""
        return (grad_theta, *(torch.zeros_like(p) for p in ctx.params))


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
        return F.softmax(self.alpha / self.temperature, dim=-1)

    def theta(self) -> Tensor:
        """The weights the next forward uses, in the current mode and train/eval state.

        Training: :func:`~lightning_dnas.nas.supernet.combiner.mixing_weights` of
        ``alpha`` (a fresh Gumbel sample in the Gumbel modes, so it differs from
        :attr:`last_theta` there). Evaluation: ``one_hot(argmax(alpha))`` (constant) for
        ``eval_mode="argmax"``, :meth:`probabilities` for ``eval_mode="soft"``.
        """
        if self.training:
            return mixing_weights(self.alpha, self.softmax, self.temperature)
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
        """Return ``sum_i theta_i * candidate_i(x)`` (see the class docstring for eval)."""
        if not self.training and self.eval_mode == "argmax":
            self.last_theta = self.theta()
            return self.chosen()(x)
        theta = self.theta()
        self.last_theta = theta
        modules = list(self.candidates.values())
        if not (self.training and self.softmax in HARD_MODES):
            return self._mix(theta.unbind(), [m(x) for m in modules])
        return self._hard_forward(x, theta, modules)

    def _hard_forward(self, x: Tensor, theta: Tensor, modules: list[nn.Module]) -> Tensor:
        """The hard-mode fast path (class docstring): the selected candidate under
        autograd, the others under ``no_grad``, zero gradients for their weights."""
        selected = int(theta.detach().argmax())
        # Trainable weights of the unselected candidates only (a weight shared with the
        # selected candidate gets its real gradient from there), each once.
        chosen_ids = {id(p) for p in _used_parameters(modules[selected])}
        others = {
            id(p): p
            for i, m in enumerate(modules)
            if i != selected
            for p in _used_parameters(m)
            if p.requires_grad and id(p) not in chosen_ids
        }
        if others and torch.is_grad_enabled():
            theta = _AttachZeroGrads.apply(theta, *others.values())
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
        return _HardMix.apply(theta, selected, *outputs)

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
        return _SoftMix.apply(torch.stack(list(weights)), *outputs)

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
