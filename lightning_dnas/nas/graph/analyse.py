"""Channel analysis of a traced network: which tensors carry which channel groups.

Every tensor node of a shape-propagated GraphModule gets a
:class:`~.channel_layout.Layout`. The node loop here dispatches each node to the rule
registered for it (:mod:`.registry`, filled by :mod:`.rules`): Conv (not depthwise) and
Linear define a new group, the graph input a silently frozen one, per-channel ops propagate it,
add/sub/mul merge groups, and so on (SPEC section 3). Whatever no rule understands freezes
the groups flowing into it (kept whole) and is reported once, naming the node; groups kept
whole anyway (graph input/output, excluded layers) are not reported. After the loop the
post-checks freeze what the rules could not decide alone and rewrite every layout in
terms of the final groups.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import fx, nn

from . import rules  # noqa: F401  (the rule modules register themselves on import)
from .channel_graph import ChannelGraph
from .channel_layout import Layout
from .context import Analysis
from .ops import OPS, is_namedtuple, module_op, op_name
from .registry import FUNCTION_RULES, MODULE_RULES, NODE_RULES


def visit(an: Analysis, node: fx.Node) -> Layout | None:
    """Layout of ``node``'s output, from the rule for its op (or module)."""
    if node.op in NODE_RULES:
        return NODE_RULES[node.op](an, node)
    if node.op == "call_module":
        module = an.modules[str(node.target)]
        src = an.layout(node.args[0]) if node.args else None
        name = module_op(module)
        rule = MODULE_RULES.get(name) if name is not None else None
        return rule(an, node, module, src) if rule is not None else an.unknown_module(node, module)
    if node.op == "call_function" and is_namedtuple(node.target):
        return NODE_RULES["namedtuple"](an, node)
    name = op_name(node)
    if name is None:
        return an.freeze_inputs(node, f"function {node.target!r}")
    src = an.layout(node.args[0]) if node.args else None
    first = node.args[0] if node.args else None
    # A tuple value or a value read from a shape is not a tensor: its own rules go first.
    reads = "tuple" if first in an.g.pieces else "size" if first in an.sizes else "tensor"
    rule = FUNCTION_RULES[reads].get(name) or FUNCTION_RULES["tensor"].get(name)
    return rule(an, node, name, src) if rule is not None else an.unknown_function(node, name)


def check_sliced_tensors(an: Analysis) -> None:
    """Freeze the channels of tensors the export would slice but whose every use is not
    understood: a per-channel parameter read by anything else than the elementwise ops
    that recorded it, a norm module (traced through) with a call that could not be searched."""
    for target, (_dim, layout) in an.g.parameters.items():
        users = {u for n in an.gm.graph.nodes if n.op == "get_attr" and n.target == target
                 for u in n.users}  # fmt: skip
        if not users <= an.parameter_uses:
            an.groups.freeze(an.groups.expand(layout),
                             f"`{target}` (parameter also used elsewhere)")  # fmt: skip
    for _node, target, layout in an.g.companions:
        if target in an.whole_norms:
            an.groups.freeze(an.groups.expand(layout),
                             f"`{target}` (a norm call not searched)")  # fmt: skip


def check_channel_counts(an: Analysis) -> None:
    """A channel count read from a tensor's shape changes when its channels are pruned:
    it may only size a reshape of tensors carrying the same groups (``b, c, h, w =
    x.shape; y.view(b, c, -1)``). Any other use (MaxViT's ``out.reshape(B, G, P, D)`` of
    another group, ``d ** -0.5``) keeps the counted channels whole."""
    for value, (source, whole) in an.sizes.items():
        expanded = an.groups.expand(source)
        assert expanded is not None
        roots = [an.g.root(s.group) for s in expanded.segments]
        for user in value.users:
            name = op_name(user)
            if whole and name == "getitem":
                continue  # an index into the shape: the channel count is checked alone
            lay = an.layout(user)
            if (name in OPS and OPS[name].kind == "reshape" and lay is not None
                    and [an.g.root(s.group) for s in lay.segments] == roots):  # fmt: skip
                continue
            an.groups.freeze(expanded, f"`{value.name}` (channel count used "
                                       "outside a reshape of its channels)")  # fmt: skip


def finish_refinements(an: Analysis) -> None:
    """Rewrite every recorded layout in terms of the final groups."""
    g, expand = an.g, an.groups.expand
    g.layouts = {n: expand(lay) for n, lay in g.layouts.items()}
    g.pieces = {n: [expand(p) for p in ps] for n, ps in g.pieces.items()}
    for lc in g.layers:
        lc.in_layout, lc.out_layout = expand(lc.in_layout), expand(lc.out_layout)
    g.companions = [(n, t, expand(lay)) for n, t, lay in g.companions]
    g.parameters = {t: (d, expand(lay)) for t, (d, lay) in g.parameters.items()}
    g.split_sizes = {a: [expand(p) for p in ps] for a, ps in g.split_sizes.items()}
    for site in g.cuts.values():
        site.pieces = [expand(p) for p in site.pieces]
    g.freeze_events = [(r, an.groups.expand_groups(gs)) for r, gs in g.freeze_events]
    g.frozen_silently = set(an.groups.expand_groups(sorted(g.frozen_silently)))


def analyse(
    gm: fx.GraphModule,
    root: nn.Module,
    searchable: Callable[[str, nn.Module], bool] = lambda n, m: True,
) -> ChannelGraph:
    """Channel layouts of every node of a shape-propagated GraphModule.

    ``searchable(name, module)`` says whether a Conv/Linear layer's own output channels may
    be searched (False for excluded layers: their group is frozen, silently). ``root`` is
    the traced network (``gm``'s module names are its own).
    """
    an = Analysis(gm, searchable, root)
    for node in gm.graph.nodes:
        layout = visit(an, node)
        if layout is not None:
            an.g.layouts[node] = layout
    check_sliced_tensors(an)
    check_channel_counts(an)
    finish_refinements(an)
    an.groups.freeze_unit_mismatches()
    return an.g
