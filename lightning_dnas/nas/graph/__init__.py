"""The graph layer: trace a network with torch.fx, propagate shapes, and find which
channels must be kept or removed together (channel groups) and which are kept whole.

It knows no search method: module types that need a custom trace (alternative branches)
are handed in by the caller as expanders, and joined branches reach the analysis as a
generic :func:`.ops.join` node. Modules: :mod:`.trace` (fx tracing, shapes), :mod:`.ops`
(the vocabulary of operations), :mod:`.channel_layout` / :mod:`.channel_graph` (the
data), :mod:`.groups` (the group table), :mod:`.analyse` (node loop, dispatch,
post-checks) and :mod:`.rules` (one module per graph pattern).
"""
