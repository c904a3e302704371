"""The mixing autograd functions of :class:`~lightning_dnas.nas.supernet.SuperNetModule`:
``y = sum_i theta_i * y_i`` (soft) and ``y = y_selected`` with the straight-through
``dL/dtheta_i = <dL/dy, y_i>`` (hard), computed without materialising the weighted outputs,
and the zero gradients handed to unselected candidates' weights in the hard fast path.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn


def promoted_dtype(ys: Sequence[Tensor]) -> torch.dtype:
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


class SoftMix(torch.autograd.Function):
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
        out = (ys[0] * theta[0]).to(promoted_dtype(ys))
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


class HardMix(torch.autograd.Function):
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
        return ys[selected].to(promoted_dtype(ys), copy=True)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        """``(<grad, y_i>)_i`` for ``theta``; ``grad`` for the selected output."""
        ys = ctx.saved_tensors
        grads: list[Tensor | None] = [None] * len(ys)
        if ctx.needs_input_grad[2 + ctx.selected]:
            grads[ctx.selected] = grad
        return (_theta_grad(grad, ys), None, *grads)


def used_parameters(module: nn.Module) -> Iterator[nn.Parameter]:
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


class AttachZeroGrads(torch.autograd.Function):
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
