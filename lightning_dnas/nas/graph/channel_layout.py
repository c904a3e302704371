"""Channel layout of a tensor: which channel groups lie along which dimension.

A tensor node's :class:`Layout` names the dimension holding channels and the groups laid
along it as ``segments``, each spanning ``size * rep`` entries (a channel of a flattened
``[N, C, H, W]`` tensor covers ``rep = H*W`` consecutive features).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Segment:
    """``size`` channels of group ``group``, each repeated ``rep`` times along the dim."""

    group: int
    size: int
    rep: int = 1


@dataclass(frozen=True)
class Layout:
    """Channel groups laid along dimension ``dim`` (non-negative) of a tensor."""

    dim: int
    segments: tuple[Segment, ...]

    @property
    def width(self) -> int:
        """Length of the channel dimension this layout describes: ``sum(size * rep)``."""
        return sum(s.size * s.rep for s in self.segments)

    def with_dim(self, dim: int) -> Layout:
        """The same segments on another dimension."""
        return Layout(dim, self.segments)
