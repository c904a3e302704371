"""Peak activation RAM of a search state (SPEC section 9), soft and hard.

The liveness of the search network's traced graph (:mod:`.graph.liveness`) gives, per
operation ``s``, the buffers live during it; a buffer's element count is
``numel_b / width_b * c_b`` with ``c_b`` the channel count of its layout (``sum(theta)``
soft, the kept count hard), so every live sum is affine in ``|alpha|``:

    soft = max_s  w_s * sum_{b live at s} w_{s,b} * bytes_b

``max`` passes its gradient to the operation holding the peak (a subgradient), so the
forward value is the exact max. For a SuperNet, an operation inside candidate ``i`` of a
choice is evaluated as in the network where that candidate is kept (the other candidates
dropped) and weighted ``w_s = p_i``; outside the candidates a candidate's buffers live on
through the choice's output weighted ``p_i`` (``w_{s,b}``): the peak of
probability-weighted live bytes, equal to the exact value at one-hot probabilities.
The hard value is the exact peak of the exported network: the graph with the argmax
candidates only, binarized masks, ``ceil(n * act_bits / 8)`` per buffer, and a separate
padding buffer in front of every Conv1d whose kept taps export with asymmetric padding.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from typing import Any

import torch
from torch import Tensor, fx

from .graph.liveness import Liveness, at_batch_one, liveness, sample_shapes
from .pit.export import tap_geometry
from .pit.masks import THRESHOLD

# node, {column: weight key}, step weight key, columns it writes, columns read for the last time
Row = tuple[fx.Node, dict[Any, Hashable | None], Hashable | None, set[Any], set[Any]]


class PeakTable:
    """The cached analysis of one engine: traced graph, batch-1 shapes, candidate of each
    node, and the column sizes as affine maps of the masks."""

    def __init__(self, engine: Any) -> None:
        self.e = engine
        cg = engine._graph
        self.gm: fx.GraphModule = next(iter(cg.layouts)).graph.owning_module
        self.shapes = sample_shapes(self.gm, at_batch_one(engine._example))
        self.order = {n: i for i, n in enumerate(self.gm.graph.nodes)}
        self.member: dict[fx.Node, tuple[str, int]] = {}
        self.joins: dict[str, fx.Node] = {}
        for n in self.gm.graph.nodes:
            choice = n.kwargs.get("key", n.kwargs.get("choice"))
            if _is_join(n) and choice in engine.choices:
                self.joins[choice] = n
                continue
            owner = self._candidate(n)
            if owner is not None:
                self.member[n] = owner
        # weight keys are tuples of (choice, candidate) atoms: the product of their p
        self.atoms = {None: 0}
        for cname, choice in engine.choices.items():
            for i in range(len(choice.names)):
                self.atoms[(cname, i)] = len(self.atoms)
        self.roots = {root: i for i, root in enumerate(engine._group_masks)}
        sizes = [m.channels for m in engine._group_masks.values()]
        self.starts = [sum(sizes[:i]) for i in range(len(sizes))]
        self.entries = sum(sizes)
        self.convs = {lc.node: lc for lc in engine._calls if lc.name in engine._taps}
        self._soft: dict[Any, tuple[Tensor, ...]] = {}
        self._hard: dict[Any, list[Row]] = {}
        self._soft_rows: list[Row] | None = None

    def _candidate(self, n: fx.Node) -> tuple[str, int] | None:
        paths = [str(n.target)] if n.op == "call_module" else []
        paths += [v[0] for v in (n.meta.get("nn_module_stack") or {}).values()]
        for cname, choice in self.e.choices.items():
            for i, cand in enumerate(choice.names):
                prefix = f"{cname}.candidates.{cand}"
                if any(p == prefix or p.startswith(prefix + ".") for p in paths):
                    return cname, i
        return None

    # -- rows -----------------------------------------------------------------------------
    def _view(self, chosen: dict[str, int] | None, keyed: bool) -> Liveness:
        """Liveness with the choices in ``chosen`` reduced to one candidate (others run
        all candidates, joined under their keys)."""
        chosen = chosen or {}
        skip = [n for n, (c, i) in self.member.items() if c in chosen and chosen[c] != i]
        mix = {}
        for cname, node in self.joins.items():
            srcs = list(node.args)
            if cname in chosen:
                mix[node] = [(srcs[chosen[cname]], None)]
            else:
                mix[node] = [(s, ((cname, i),) if keyed else None) for i, s in enumerate(srcs)]
        key_of = (lambda n: (self.member[n],) if n in self.member else None) if keyed else None
        return liveness(self.gm, self.shapes, skip, mix, key_of, combine=_both)

    @staticmethod
    def _rows(live: Liveness, keep: Any, weight: Hashable | None, local: Any) -> list[Row]:
        rows = []
        for step in live.steps:
            if not keep(step.node):
                continue
            cols = {}
            for b, k in step.live.items():
                buf = live.buffers[b]
                kept = tuple(a for a in k if a != local) if k is not None else ()
                cols[(buf.owner, buf.piece, buf.numel)] = kept or None
            ends = {_col(live, b) for b in step.ends & step.reads}
            step_key = (weight,) if weight is not None else None
            rows.append((step.node, cols, step_key, {_col(live, b) for b in step.writes}, ends))
        return rows

    def soft_rows(self) -> list[Row]:
        """Rows of the probability-weighted table (see the module docstring)."""
        if self._soft_rows is not None:
            return self._soft_rows
        rows = self._rows(self._view(None, True), lambda n: n not in self.member, None, object())
        for cname, choice in self.e.choices.items():
            for i in range(len(choice.names)):
                live = self._view({cname: i}, True)
                rows += self._rows(live, lambda n, o=(cname, i): self.member.get(n) == o,
                                   (cname, i), (cname, i))  # fmt: skip
        rows.sort(key=lambda r: self.order[r[0]])
        self._soft_rows = rows
        return rows

    def hard_rows(self, chosen: dict[str, int]) -> list[Row]:
        """Rows of the exported network (argmax candidates only)."""
        key = tuple(sorted(chosen.items()))
        if key not in self._hard:
            self._hard[key] = self._rows(self._view(chosen, False), lambda n: True, None, None)
        return self._hard[key]

    def with_pads(self, rows: list[Row], pads: dict[fx.Node, int]) -> list[Row]:
        """Insert the export's padding op before each Conv1d of ``pads`` (numel of the
        padded input): a row for the pad (its input and output live) and the conv's row
        reading the padded buffer (the input dies at the pad when the conv read it last)."""
        out = []
        for node, cols, weight, writes, ends in rows:
            if node not in pads:
                out.append((node, cols, weight, writes, ends))
                continue
            key = next((cols[w] for w in writes if w in cols), None)
            pad = ("pad", node, pads[node])
            before = {c: k for c, k in cols.items() if c not in writes} | {pad: key}
            during = {c: k for c, k in cols.items() if c not in ends} | {pad: key}
            out += [(node, before, weight, set(), set()), (node, during, weight, writes, ends)]
        return out

    def pads(self) -> dict[fx.Node, int]:
        """Conv1d calls whose kept taps export as ``Sequential(ConstantPad1d, Conv1d)``,
        with the padded input's element count at full width."""
        found = {}
        for node, lc in self.convs.items():
            conv = lc.module
            taps = self.e._taps[lc.name].kept_taps()
            if len(taps) == conv.kernel_size[0]:
                continue
            _, _, (left, right) = tap_geometry(conv, taps)
            if left == right and left >= 0:
                continue
            length = self.shapes[node.args[0]][-1]
            found[node] = conv.in_channels * (length + left + right)
        return found

    # -- sizes ----------------------------------------------------------------------------
    def _layout(self, col: Any) -> Any:
        cg = self.e._graph
        if col[0] == "pad":
            return self.convs[col[1]].in_layout
        owner, piece, _ = col
        if piece is None:
            return cg.layouts.get(owner)
        pieces = cg.pieces.get(owner)
        return pieces[piece] if pieces is not None and piece < len(pieces) else None

    def sizes(self, cols: list[Any]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(M, c, M0, c0)``: soft elements ``M |a| + c``, hard ``M0 kept + c0`` per column
        (``kept`` the binarized masks, in the order of ``|a|``)."""
        cg = self.e._graph
        masks = list(self.e._group_masks.values())
        f64 = torch.float64  # exact integer element counts
        m, c = torch.zeros(len(cols), self.entries, dtype=f64), torch.zeros(len(cols), dtype=f64)
        m0, c0 = torch.zeros_like(m), torch.zeros_like(c)
        for j, col in enumerate(cols):
            numel = col[2]
            layout = self._layout(col)
            if layout is None or not layout.width:
                c[j] = c0[j] = numel
                continue
            factor = numel / layout.width
            for seg in layout.segments:
                if cg.is_frozen(seg.group):
                    c[j] += factor * seg.size * seg.rep
                    c0[j] += factor * seg.size * seg.rep
                    continue
                r = self.roots[cg.root(seg.group)]
                coef = factor * seg.rep * cg.unit(seg.group)
                lo, hi = self.starts[r], self.starts[r] + masks[r].channels
                m[j, lo:hi] += coef * masks[r]._scale.cpu()
                c[j] += coef * float(masks[r]._offset.sum())
                m0[j, lo:hi] += coef
        return m, c, m0, c0


def _is_join(n: fx.Node) -> bool:
    """The analysis graph's node joining a choice's candidates (``join``/``choice_mix``)."""
    name = getattr(n.target, "__name__", "")
    return n.op == "call_function" and name in ("join", "choice_mix")


def _both(inner: Hashable, outer: Hashable) -> Hashable:
    """Both weight keys must hold: the union of their atoms (weights multiply)."""
    return tuple(sorted(set(inner) | set(outer), key=str))  # type: ignore[arg-type]


def _col(live: Liveness, b: int) -> tuple[Any, ...]:
    buf = live.buffers[b]
    return (buf.owner, buf.piece, buf.numel)


def table(engine: Any) -> PeakTable:
    """The engine's :class:`PeakTable`, built on first use."""
    t = engine.__dict__.get("_peak_table")
    if t is None:
        t = PeakTable(engine)
        engine.__dict__["_peak_table"] = t
    return t


def soft_peak(engine: Any, act_bits: int, ref: Tensor) -> Tensor:
    """Differentiable peak RAM in bytes (see the module docstring)."""
    t = table(engine)
    pads = t.pads() if t.convs else {}
    key = (tuple(sorted((t.order[n], v) for n, v in pads.items())), ref.device, ref.dtype)
    if key not in t._soft:
        rows = t.with_pads(t.soft_rows(), pads)
        cols = sorted({c for r in rows for c in r[1]}, key=str)
        index = {c: j for j, c in enumerate(cols)}
        a = torch.zeros(len(rows), len(cols), dtype=torch.float64)
        slots: dict[Any, int] = {None: 0}
        widx = torch.zeros(len(rows), len(cols), dtype=torch.long)
        for i, (_, live, _, _, _) in enumerate(rows):
            for col, k in live.items():
                a[i, index[col]] = 1.0
                widx[i, index[col]] = slots.setdefault(k, len(slots))
        sw = torch.tensor([slots.setdefault(r[2], len(slots)) for r in rows], dtype=torch.long)
        width = max([len(k) for k in slots if k is not None], default=1)
        atoms = torch.zeros(len(slots), width, dtype=torch.long)  # atom 0 weighs 1
        for k, j in slots.items():
            for n, atom in enumerate(k or ()):
                atoms[j, n] = t.atoms[atom]
        m, c, _, _ = t.sizes(cols)
        dd = {"device": ref.device, "dtype": ref.dtype}
        if not engine.choices:  # everything certain: fold the live sets into the sizes
            t._soft[key] = ((a @ m).to(**dd), (a @ c).to(**dd))
        else:
            t._soft[key] = (a.to(**dd), widx.to(ref.device), sw.to(ref.device),
                            m.to(**dd), c.to(**dd), atoms.to(ref.device))  # fmt: skip
    parts = t._soft[key]
    masks = engine._group_masks
    alphas = engine._bank.alphas().abs().to(ref.dtype) if masks else None
    if not engine.choices:
        am, ac = parts
        values = ac if alphas is None else torch.addmv(ac, am, alphas)
    else:
        a, widx, sw, m, c, atoms = parts
        sizes = c if alphas is None else torch.addmv(c, m, alphas)
        base = torch.cat([ref.new_ones(1), *[engine._weights(ch) for ch in
                                             engine.choices.values()]])  # fmt: skip
        weights = base[atoms].prod(dim=1)
        values = (weights[widx] * a) @ sizes * weights[sw]
    return values.max() * (act_bits / 8)


def hard_peak(engine: Any, act_bits: int) -> tuple[int, str | None]:
    """Exact peak RAM in bytes of the exported network and the node holding it."""
    t = table(engine)
    chosen = {n: c.argmax() for n, c in engine.choices.items()}
    rows = t.with_pads(t.hard_rows(chosen), t.pads() if t.convs else {})
    cols = sorted({c for r in rows for c in r[1]}, key=str)
    _, _, m0, c0 = t.sizes(cols)
    masks = list(engine._group_masks.values())
    if masks:
        kept = torch.cat([(mk.theta() > THRESHOLD).double() for mk in masks]).detach().cpu()
        elems = m0 @ kept + c0
    else:
        elems = c0
    pairs = zip(cols, elems.tolist(), strict=True)
    nbytes = {col: math.ceil(e * act_bits / 8 - 1e-6) for col, e in pairs}
    best, where = -1, None
    for node, live, _, _, _ in rows:
        total = sum(nbytes[col] for col in live)
        if total > best:
            best, where = total, node.name
    return max(best, 0), where
