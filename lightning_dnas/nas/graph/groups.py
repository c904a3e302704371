"""The channel-group table: the only code that creates, merges, freezes or cuts groups.

A *channel group* is a set of channels that must be kept or removed together (one mask).
Groups are merged with union-find (``ChannelGraph.parent``); a *frozen* group is kept whole;
a *silently frozen* one is frozen for a reason outside the graph (graph input/output, an
excluded layer), with no warning. A *refined* group has been cut in two (a chunk boundary
inside it): layouts recorded before the cut are rewritten with :meth:`GroupTable.expand`.
"""

from __future__ import annotations

import itertools
import math

from .channel_graph import ChannelGraph
from .channel_layout import Layout, Segment


def _ends(layout: Layout) -> set[int]:
    """Feature offsets where the segments of ``layout`` end."""
    return set(itertools.accumulate(s.size * s.rep for s in layout.segments))


class GroupTable:
    """Mutations of the groups of ``graph`` (its ``parent``, ``group_size``, ``group_unit``,
    ``frozen``, ``frozen_silently`` and ``freeze_events``)."""

    def __init__(self, graph: ChannelGraph) -> None:
        self.g = graph
        self.next_group = itertools.count()
        # A refined group is replaced by two groups: (id, size) of its head and its tail.
        self.refined: dict[int, tuple[tuple[int, int], tuple[int, int]]] = {}

    def new_group(self, size: int, frozen_reason: str | None = None) -> int:
        """A new group of ``size`` channels (frozen, silently, when a reason is given)."""
        gid = next(self.next_group)
        self.g.parent[gid] = gid
        self.g.group_size[gid] = size
        if frozen_reason is not None:
            self.g.frozen.add(gid)
        return gid

    def fresh(self, dim: int, size: int) -> Layout:
        """A layout of one new frozen group (channels the analysis does not follow)."""
        return Layout(dim, (Segment(self.new_group(size, "untracked"), size),))

    def union(self, a: int, b: int) -> None:
        """Merge the groups of ``a`` and ``b``: frozen if either is, unit the lcm of both."""
        ra, rb = self.g.root(a), self.g.root(b)
        if ra == rb:
            return
        self.g.parent[rb] = ra
        if rb in self.g.frozen:
            self.g.frozen.add(ra)
        self.coarsen(ra, self.g.group_unit.pop(rb, 1))

    def coarsen(self, group: int, unit: int) -> None:
        """Let one mask entry of ``group`` cover ``unit`` channels (lcm with the current)."""
        root = self.g.root(group)
        self.g.group_unit[root] = math.lcm(self.g.group_unit.get(root, 1), unit)

    def tie_units(self, layout: Layout, width: int, reason: str) -> None:
        """Search the channels of ``layout`` in whole units of ``width`` consecutive
        channels (the groups of a grouped conv or of a GroupNorm): each segment's group is
        coarsened to ``width``; frozen with ``reason`` when a unit would straddle two
        segments or a channel spans several features (``rep > 1``)."""
        offsets = itertools.accumulate((s.size * s.rep for s in layout.segments), initial=0)
        if any(o % width for o in offsets) or any(s.rep != 1 and width > 1
                                                  for s in layout.segments):  # fmt: skip
            self.freeze(layout, reason)
        for seg in layout.segments:
            self.coarsen(seg.group, width)

    def freeze(self, layout: Layout | None, reason: str, warn: bool = True) -> None:
        """Keep every group of ``layout`` whole, recording ``reason`` for the warning."""
        if layout is None:
            return
        groups = [s.group for s in layout.segments]
        # Only a freeze that changes something is reported: groups already frozen were
        # reported where that happened.
        if warn and any(not self.g.is_frozen(gid) for gid in groups):
            self.g.freeze_events.append((reason, groups))
        for gid in groups:
            self.g.frozen.add(self.g.root(gid))

    def freeze_silently(self, layout: Layout | None) -> None:
        """Freeze ``layout`` for a reason outside the graph's semantics (graph input/output,
        an excluded layer): silently, and no other freeze of these groups warns."""
        if layout is not None:
            self.freeze(layout, "", warn=False)
            self.g.frozen_silently.update(s.group for s in layout.segments)

    def refine(self, group: int, at: int) -> bool:
        """Replace the merged group of ``group`` by two: its first ``at`` channels and the
        rest, in every member alike (ties between members are kept: heads with heads, tails
        with tails). False, changing nothing, when ``at`` cuts a unit of a grouped conv."""
        root = self.g.root(group)
        size, unit = self.g.group_size[root], self.g.group_unit.get(root, 1)
        if at % unit:
            return False
        members = [h for h in self.g.parent if self.g.root(h) == root]
        frozen = root in self.g.frozen
        heads, tails = [], []
        for h in members:
            head, tail = self.new_group(at), self.new_group(size - at)
            self.refined[h] = ((head, at), (tail, size - at))
            heads.append(head)
            tails.append(tail)
        for part in (heads, tails):
            for other in part[1:]:
                self.union(part[0], other)
            self.coarsen(part[0], unit)
            if frozen:
                self.g.frozen.add(self.g.root(part[0]))
        for h in members:
            del self.g.parent[h], self.g.group_size[h]
            self.g.group_unit.pop(h, None)
            self.g.frozen.discard(h)
        return True

    def leaves(self, segment: Segment) -> list[Segment]:
        """``segment`` with every refined group replaced by its current parts."""
        parts = self.refined.get(segment.group)
        if parts is None:
            return [segment]
        return [x for gid, size in parts for x in self.leaves(Segment(gid, size, segment.rep))]

    def expand(self, layout: Layout | None) -> Layout | None:
        """``layout`` in terms of the current (unrefined) groups."""
        if layout is None or not any(s.group in self.refined for s in layout.segments):
            return layout
        return Layout(layout.dim, tuple(x for s in layout.segments for x in self.leaves(s)))

    def expand_groups(self, groups: list[int]) -> list[int]:
        """Group ids in terms of the current (unrefined) groups."""
        return [x.group for g in groups for x in self.leaves(Segment(g, 1))]

    def cut(self, layout: Layout, offset: int) -> Layout | None:
        """``layout`` (expanded) with a segment boundary at feature ``offset``, refining the
        group the offset falls into; None when it falls inside one channel's features or a
        grouped conv's unit."""
        layout = self.expand(layout)
        assert layout is not None
        start = 0
        for seg in layout.segments:
            end = start + seg.size * seg.rep
            if start < offset < end:
                at = offset - start
                if at % seg.rep or not self.refine(seg.group, at // seg.rep):
                    return None
                return self.expand(layout)
            start = end
        return layout

    def align(self, layouts: list[Layout]) -> list[Layout] | None:
        """``layouts`` of one width cut at each other's segment boundaries (``cat([a, b]) +
        c`` cuts c's group where a ends), so that they pair up segment by segment; None
        when a cut is impossible or the pieces differ in their features per channel.
        Terminates: every cut adds a segment, and a layout has at most ``width`` of them."""
        while True:
            current = [lay for lay in map(self.expand, layouts) if lay is not None]
            bounds = {b for lay in current for b in _ends(lay)}
            pending = next(((lay, b) for lay in current for b in sorted(bounds)
                            if b not in _ends(lay)), None)  # fmt: skip
            if pending is None:
                break
            if self.cut(*pending) is None:
                return None
        shape = [(s.size, s.rep) for s in current[0].segments]
        if all([(s.size, s.rep) for s in lay.segments] == shape for lay in current):
            return current
        return None

    def merge(self, layouts: list[Layout], reason: str) -> Layout:
        """Make ``layouts`` share their channels (residual add etc.), cut at each other's
        segment boundaries where needed (:meth:`align`); freeze if they cannot line up."""
        first = layouts[0]
        shape = [(s.size, s.rep) for s in first.segments]
        same_dim = len({lay.dim for lay in layouts}) == 1
        if (same_dim and len({lay.width for lay in layouts}) == 1
                and any([(s.size, s.rep) for s in lay.segments] != shape for lay in layouts)):
            aligned = self.align(layouts)  # fmt: skip
            if aligned is not None:
                layouts, first = aligned, aligned[0]
                shape = [(s.size, s.rep) for s in first.segments]
            else:  # a failed alignment may have refined groups: freeze the current ones
                layouts = [lay for lay in map(self.expand, layouts) if lay is not None]
        if same_dim and all([(s.size, s.rep) for s in lay.segments] == shape
                            for lay in layouts[1:]):  # fmt: skip
            for lay in layouts[1:]:
                for a, b in zip(first.segments, lay.segments, strict=True):
                    self.union(a.group, b.group)
        else:
            for lay in layouts:
                self.freeze(lay, reason)
        return first

    def freeze_unit_mismatches(self) -> None:
        """Freeze the groups whose width is not a multiple of their unit (grouped convs of
        incompatible widths reading one group)."""
        for gid in self.g.parent:
            root = self.g.root(gid)
            if self.g.group_size[root] % self.g.group_unit.get(root, 1):
                self.g.frozen.add(root)
