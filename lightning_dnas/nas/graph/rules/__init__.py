"""One module per graph pattern; each registers its rules (see :mod:`..registry`) on import.

Adding an op: an entry in :data:`..ops.OPS`, a rule here if its kind is new, and a test
file of the same name in ``tests/nas/graph``.
"""

from . import (  # noqa: F401  (imported for their registrations)
    activations,
    channel_count,
    concat,
    flatten,
    indexing,
    io_frozen,
    join,
    layer_norm,
    multi_io,
    narrow,
    norms,
    padding,
    permute,
    pooling,
    producers,
    residual,
    root_layer,
    split_chunk,
)
