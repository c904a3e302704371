"""What the channel analysis returns: a :class:`ChannelGraph` of layouts, layer calls,
companions and the channel groups (with their merges and freezes)."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import fx, nn

from .channel_layout import Layout


@dataclass
class LayerCall:
    """One call of a Conv/Linear layer: what it reads and what it writes.

    ``kind`` is ``"conv"``, ``"depthwise"``, ``"grouped"`` (groups > 1, in == out channels,
    searched in whole groups) or ``"linear"``; ``in_layout`` is None when the
    layer's input channels are not tracked (kept whole); ``positions`` is the number of
    output positions per sample (H*W for a Conv2d, 1 for a Linear on ``[N, F]``).
    """

    node: fx.Node
    name: str
    module: nn.Module
    kind: str
    in_layout: Layout | None
    out_layout: Layout
    positions: int


@dataclass
class CutSite:
    """A call cutting the channel dim at constant positions (:mod:`.cuts`) whose pieces
    are searched: the export moves its constants to the kept widths. ``node`` is the call
    (the first, for a module called more than once), ``entry`` the position of the slice
    in a getitem's index (None otherwise), ``widths`` the pieces' widths and ``pieces``
    their layouts."""

    node: fx.Node
    entry: int | None
    widths: list[int]
    pieces: list[Layout]


@dataclass
class ChannelGraph:
    """Result of :func:`~lightning_dnas.nas.graph.analyse.analyse`: layouts per node, layer
    calls, norms (companions), the join node of each joined module, groups and their
    merges/freezes.

    ``companions`` are the norms/PReLUs (and the module owning a functional layer norm) on
    searched channels, ``(node, module name, layout)``; ``parameters`` the tensors read with
    get_attr that an elementwise op broadcasts along the channel dim, ``{dotted name: (dim
    of the tensor holding channels, layout)}``: both are sliced on export. ``split_sizes``
    maps a module attribute holding explicit split sizes (timm MixNet's ``self.splits``)
    to the layouts of the pieces: the export sets it to their kept widths. ``cuts`` maps
    (module path, position among the calls of its own code) to each searched cut at
    constant positions (:class:`CutSite`): the export rewrites that module's forward.
    ``pieces`` holds the layouts inside tuple-valued nodes (the pieces of a split/chunk,
    the fields of a namedtuple), None for an untracked piece. ``joins`` maps the ``key`` of
    each :func:`~lightning_dnas.nas.graph.ops.join` node to it. ``frozen_silently`` lists
    groups that are kept whole whatever happens elsewhere (graph input/output, excluded layers): a
    freeze that only touches those is not worth a warning.
    """

    layouts: dict[fx.Node, Layout] = field(default_factory=dict)
    pieces: dict[fx.Node, list[Layout | None]] = field(default_factory=dict)
    layers: list[LayerCall] = field(default_factory=list)
    companions: list[tuple[fx.Node, str, Layout]] = field(default_factory=list)
    parameters: dict[str, tuple[int, Layout]] = field(default_factory=dict)
    split_sizes: dict[str, list[Layout]] = field(default_factory=dict)
    cuts: dict[tuple[str, int], CutSite] = field(default_factory=dict)
    joins: dict[str, fx.Node] = field(default_factory=dict)
    group_size: dict[int, int] = field(default_factory=dict)
    group_unit: dict[int, int] = field(default_factory=dict)
    parent: dict[int, int] = field(default_factory=dict)
    frozen: set[int] = field(default_factory=set)
    frozen_silently: set[int] = field(default_factory=set)
    freeze_events: list[tuple[str, list[int]]] = field(default_factory=list)

    def root(self, group: int) -> int:
        """Representative of ``group`` after merging."""
        while self.parent[group] != group:
            self.parent[group] = self.parent[self.parent[group]]
            group = self.parent[group]
        return group

    def unit(self, group: int) -> int:
        """Consecutive channels that one mask entry of ``group`` keeps or removes together
        (1, or the group width of a grouped conv that reads the group)."""
        return self.group_unit.get(self.root(group), 1)

    def is_frozen(self, group: int) -> bool:
        """Whether the merged group of ``group`` is kept whole."""
        return self.root(group) in self.frozen

    def searchable(self, layout: Layout | None) -> bool:
        """Whether any channel of ``layout`` can be pruned."""
        return layout is not None and any(not self.is_frozen(s.group) for s in layout.segments)
