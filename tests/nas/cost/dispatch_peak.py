"""Independent peak-RAM measurement: the network runs at batch 1 under a
TorchDispatchMode that records every aten operation's activation inputs and outputs; the
SPEC 9 rules are then applied to that record (no torch.fx, no lightning_dnas code).

A *value* is what a tensor object holds at one ``_version``: an in-place aten operation
(``relu_``, ``add_``) leaves a new value in the same tensor (its version moves after the
mode's handler returns), and other views of the storage keep reading the old value, which
is the out-of-place reading the SPEC prescribes for PyTorch's in-place operations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch.utils._python_dispatch import TorchDispatchMode

# Rule (a): results sharing their input's buffer.
_RESHAPES = {"view", "_unsafe_view", "reshape", "alias", "squeeze", "unsqueeze", "detach",
             "flatten", "unflatten", "view_as", "_reshape_alias"}  # fmt: skip
# Views that are aliases only when they keep every element (else a copy, as TFLM slices).
_SLICES = {"slice", "select", "narrow", "split", "split_with_sizes", "unbind", "chunk",
           "tensor_split"}  # fmt: skip
# Rule (b): elementwise operations that may write into their input.
_ELEMENTWISE = {"relu", "hardtanh", "hardswish", "hardsigmoid", "sigmoid", "silu", "gelu",
                "leaky_relu", "tanh", "clamp", "clamp_min", "clamp_max", "clip",
                "native_batch_norm", "_native_batch_norm_legit_no_training",
                "_native_batch_norm_legit"}  # fmt: skip
_ARITH = {"add", "sub", "mul", "div", "rsub", "true_divide"}


@dataclass
class _Op:
    name: str
    kind: str  # "alias", "inplace", "owner"
    inputs: list[int]  # activation values read
    outputs: list[int]  # values produced
    source: int | None = None  # for alias/inplace: the value written into / aliased


@dataclass
class DispatchRecord:
    """What the mode saw: values' element counts, operations, network inputs/outputs."""

    numel: list[int] = field(default_factory=list)
    ops: list[_Op] = field(default_factory=list)
    inputs: list[int] = field(default_factory=list)
    outputs: list[int] = field(default_factory=list)


class _Recorder(TorchDispatchMode):
    def __init__(self, record: DispatchRecord) -> None:
        super().__init__()
        self.record = record
        self.versions: dict[int, list[tuple[int, int]]] = {}  # id -> [(version, value)]
        self.keep: list[torch.Tensor] = []  # holds every tensor seen: ids never reused

    def new_value(self, t: torch.Tensor, version: int) -> int:
        self.record.numel.append(t.numel())
        vid = len(self.record.numel) - 1
        self.versions.setdefault(id(t), []).append((version, vid))
        self.keep.append(t)
        return vid

    def value(self, t: torch.Tensor) -> int | None:
        entries = self.versions.get(id(t))
        if not entries:
            return None
        fitting = [v for ver, v in entries if ver <= t._version]
        return fitting[-1] if fitting else None

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        flat_in = [a for a in _flat((args, kwargs)) if isinstance(a, torch.Tensor)]
        acts = [(a, self.value(a)) for a in flat_in]
        acts = [(a, v) for a, v in acts if v is not None]
        versions = {id(a): a._version for a in flat_in}
        out = func(*args, **kwargs)
        if not acts:
            return out
        outs = [o for o in _flat(out) if isinstance(o, torch.Tensor)]
        base = func._schema.name.split("::")[-1]
        mutating = func._schema.is_mutable
        name = base[:-1] if base.endswith("_") and not base.startswith("_") else base
        first, first_v = acts[0]
        kind = "owner"
        if name in _RESHAPES:
            kind = "alias"
        elif name == "clone" and kwargs.get("memory_format") == torch.contiguous_format:
            kind = "alias"  # contiguous()/reshape of a non-contiguous tensor
        elif name in _SLICES and all(o.numel() == first.numel() for o in outs):
            kind = "alias"
        elif name in _ELEMENTWISE or (
            name in _ARITH and len(acts) == 1 and tuple(first.shape) == tuple(outs[0].shape)
        ):
            kind = "inplace"
        produced = []
        for o in outs:
            if mutating and any(o is a for a, _ in acts):
                produced.append(self.new_value(o, versions[id(o)] + 1))  # bumps on return
            else:
                produced.append(self.new_value(o, o._version))
        self.record.ops.append(_Op(base, kind, [v for _, v in acts], produced, first_v))
        return out


def _flat(x):
    if isinstance(x, (tuple, list)):
        for a in x:
            yield from _flat(a)
    elif isinstance(x, dict):
        for a in x.values():
            yield from _flat(a)
    else:
        yield x


def record(net: torch.nn.Module, *inputs: torch.Tensor) -> DispatchRecord:
    """Run ``net`` (eval, no_grad) on the first sample of ``inputs`` and record it."""
    rec = DispatchRecord()
    xs = [x[:1].clone() for x in inputs]
    net.eval()
    mode = _Recorder(rec)
    with torch.no_grad():
        for x in xs:
            rec.inputs.append(mode.new_value(x, x._version))
        with mode:
            out = net(*xs)
    rec.outputs = [v for o in _flat(out) if isinstance(o, torch.Tensor)
                   if (v := mode.value(o)) is not None]  # fmt: skip
    return rec


def dispatch_peak(net: torch.nn.Module, *inputs: torch.Tensor, act_bits: int = 8) -> int:
    """Peak activation bytes of ``net`` at batch 1 by the SPEC 9 rules on the aten ops."""
    rec = record(net, *inputs)
    ops = rec.ops
    inf = math.inf
    # last read of each value, through the aliases made of it
    last = [-inf] * len(rec.numel)
    for v in rec.outputs:
        last[v] = inf
    for i in range(len(ops) - 1, -1, -1):
        op = ops[i]
        for v in op.inputs:
            if op.kind == "alias" and v == op.source:
                last[v] = max(last[v], max((last[o] for o in op.outputs), default=-inf), i)
            else:
                last[v] = max(last[v], i)
    buf_of: dict[int, int] = {}
    created: list[int] = []
    size: list[int] = []
    members: list[list[int]] = []

    def own(v: int, at: int) -> None:
        buf_of[v] = len(created)
        created.append(at)
        size.append(math.ceil(rec.numel[v] * act_bits / 8))
        members.append([v])

    for v in rec.inputs:
        own(v, -1)
    for i, op in enumerate(ops):
        if op.kind == "alias":
            for o in op.outputs:
                buf_of[o] = buf_of[op.source]
                members[buf_of[o]].append(o)
            continue
        if op.kind == "inplace":
            b = buf_of[op.source]
            if max(last[v] for v in members[b]) <= i:  # the input's buffer dies here
                out = op.outputs[0]
                buf_of[out] = b
                members[b].append(out)
                for o in op.outputs[1:]:
                    own(o, i)
                continue
        for o in op.outputs:
            own(o, i)
    end = [max(last[v] for v in vs) for vs in members]
    best = 0
    for i in range(len(ops)):
        total = sum(s for b, s in enumerate(size) if created[b] <= i <= end[b])
        best = max(best, total)
    if not ops:
        best = sum(size)
    return best
