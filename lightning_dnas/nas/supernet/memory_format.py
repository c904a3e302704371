"""Memory format of the unselected candidates in the hard-mode fast path.

In the hard modes an unselected candidate runs only to give ``alpha`` its
straight-through gradient ``<dL/dy, y_i>`` (and its BatchNorm statistics): its output is
an internal value, so it may be computed in whichever memory format the backend runs
fastest. On CPU, oneDNN's 2-D convolutions and BatchNorm run about 2-3x faster forward in
channels_last than in the default (NCHW) format (measured in docs/BENCHMARKS.md), so
such candidates get a channels_last copy of their input where
:func:`channels_last_helps`.

The values are the same up to floating-point rounding (a convolution sums in a different
order), which is why it is limited to candidates whose result cannot depend on the memory
format in any other way: every submodule must be a layer from :data:`LAYOUT_FREE_LAYERS`,
a container whose forward is ``nn.Sequential``'s, or a layer that declares
``layout_free = True`` (the PIT masked layers). A custom ``forward`` could call
``Tensor.view``, which fails on channels_last tensors, and random layers (Dropout) draw
their numbers in memory order, so neither is converted.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["LAYOUT_FREE_LAYERS", "channels_last_helps", "is_layout_free"]

LAYOUT_FREE_LAYERS: tuple[type[nn.Module], ...] = (
    nn.Conv2d,
    nn.BatchNorm2d,
    nn.Identity,
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.SiLU,
    nn.GELU,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Sigmoid,
    nn.Tanh,
    nn.MaxPool2d,
    nn.AvgPool2d,
)
"""Layers whose forward gives the same values for any memory format of a 4-D input."""


def is_layout_free(module: nn.Module) -> bool:
    """Whether ``module``'s output values cannot depend on its input's memory format
    beyond rounding (see the module docstring): a layer declaring ``layout_free = True``,
    an exact :data:`LAYOUT_FREE_LAYERS` type (a subclass may override ``forward``), or a
    container with ``nn.Sequential``'s forward whose children all are."""
    if getattr(type(module), "layout_free", False):  # class attribute: no Module.__getattr__
        return True
    if type(module).forward is nn.Sequential.forward:
        return all(is_layout_free(child) for child in module.children())
    return type(module) in LAYOUT_FREE_LAYERS


def channels_last_helps(x: Tensor) -> bool:
    """Whether unselected candidates should get ``x`` in channels_last: a 4-D
    floating-point CPU tensor in the default contiguous format with oneDNN available (where
    channels_last was measured faster). Not for a tensor already in channels_last, nor one
    for which both formats coincide (``C == 1`` or ``H * W == 1``)."""
    return (
        x.dim() == 4
        and x.device.type == "cpu"
        and x.is_floating_point()
        and torch.backends.mkldnn.is_available()
        and x.is_contiguous()
        and not x.is_contiguous(memory_format=torch.channels_last)
    )
