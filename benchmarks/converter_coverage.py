"""Converter coverage: does ``PIT`` take every torchvision classification network?

For each model of ``torchvision.models.list_models(module=torchvision.models)`` (random
weights, ``weights=None``, batch 2, a small input where the model accepts one), in one
process with a try/except per model:

1. **convert**: ``PIT(model, example_input=x, cost={"params": "params", "macs": "macs"})``,
   timed; the ``lightning_dnas`` freeze warnings are captured (which nodes froze, why, how
   many Conv/Linear layers keep their output channels whole);
2. **init equality** (eval mode, every mask at its initial value 1): the converted network
   must compute exactly what the original model computes (``torch.equal``, else the max
   abs difference relative to the output scale is reported; <= 1e-6 counts as equal);
3. **search step** (train mode): forward, ``loss = output.sum() + 1e-9 * soft_cost``,
   backward; reported: whether it runs and how many mask parameters got a non-zero gradient;
4. **export**: every architecture parameter set to ``U[0, 1)`` (fixed generator, so about
   half the channels of each group are pruned), then ``search.export(check=True)``, timed
   (a RuntimeError there means the exported network differs from the masked one); the max
   relative difference exported vs masked (eval mode) and whether ``hard_cost("params")``
   equals the parameter count of the exported network's Conv/Linear layers are reported.

Models above ~150M parameters (ViT-L/H, RegNetY-128GF, ConvNeXt-L) are skipped unless
``--all``: they repeat the structure of a smaller sibling and need several GB per copy.

Usage::

    python benchmarks/converter_coverage.py                 # all models but the huge ones
    python benchmarks/converter_coverage.py --quick         # a handful of small models
    python benchmarks/converter_coverage.py --models resnet18,mobilenet_v2
    python benchmarks/converter_coverage.py --all --output docs/COVERAGE.md --json out.json

Prints one line per model while running, then the table; the full run (no ``--models`` /
``--quick``) writes ``docs/COVERAGE.md`` unless ``--output`` says otherwise.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import gc
import json
import platform
import re
import subprocess
import sys
import time
import traceback
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lightning_dnas import PIT  # noqa: E402

QUICK = ["mobilenet_v2", "resnet18", "squeezenet1_1", "shufflenet_v2_x0_5", "mnasnet0_5",
         "regnet_x_400mf"]  # fmt: skip
# > ~150M parameters: the same blocks as a smaller sibling, several GB per copy.
HUGE = {"vit_h_14", "vit_l_16", "vit_l_32", "regnet_y_128gf", "convnext_large"}
EQUAL_TOL = 1e-6  # relative (to the output scale) max abs difference counted as "equal"
EXPORT_TOL = 1e-5  # the tolerance of export(check=True)
TIMM_BEGIN = "<!-- timm_coverage.py: begin -->"  # the report's last section, from that script


@dataclass
class Result:
    model: str
    input: str = ""
    params_m: float = 0.0
    converts: bool = False
    error: str = ""  # first failing stage: "ErrorType: first line"
    stage: str = ""  # where it failed: build/convert/equal/step/export
    convert_s: float | None = None
    groups: int | None = None
    layers: int | None = None  # Conv/Linear layers seen by the analysis
    searchable_layers: int | None = None  # of those, with searchable output channels
    frozen_layers: list[str] = field(default_factory=list)  # named by a freeze warning
    kept_whole: list[str] = field(default_factory=list)  # all non-searchable Conv/Linear
    warnings: list[str] = field(default_factory=list)  # freeze warnings, summarised
    raw_warnings: list[str] = field(default_factory=list)
    init_equal: bool | None = None
    init_rel_diff: float | None = None
    step_ok: bool | None = None
    mask_grads: str = ""  # "k/n" mask parameters with a non-zero gradient
    export_ok: bool | None = None
    export_rel_diff: float | None = None
    export_s: float | None = None
    cost_ok: bool | None = None  # hard_cost("params") == exported Conv/Linear params
    params_kept: float | None = None  # hard_cost("params") after random masks / at init
    # 1 - hard_cost("params") with every mask at 0 (each group keeps one unit) / at init:
    # the fraction of Conv/Linear parameters the search can remove.
    removable: float | None = None
    # Parameters of the Conv/Linear layers with searchable output channels / of all of them.
    searchable_params: float | None = None


@dataclass(frozen=True)
class Cause:
    """A known root cause of freeze warnings: ``pattern`` matches the warning's reason."""

    key: str
    pattern: str
    title: str
    diagnosis: str
    repro: str


# Diagnosed from the torchvision run (rules in lightning_dnas/nas/graph/rules/).
CAUSES = [
    Cause(
        "stochastic_depth",
        r"^stochastic_depth$",
        "torchvision's `stochastic_depth` (an fx-wrapped leaf function) is not understood "
        "(fixed in b67f6c4: seeing it again is a regression)",
        "`torchvision.ops.stochastic_depth` is registered with `torch.fx.wrap`, so it is one "
        "opaque call_function node; `op_name` gives `stochastic_depth` (torchvision passes the "
        "`startswith('torch')` test), which no rule knows, and `visit_function` falls back to "
        "`freeze_inputs`. It multiplies each sample (row mode) or the batch by a scalar 0 or "
        "1/(1-p): channel-preserving and zero-preserving. Missing rule: treat it (and "
        "`drop_block2d/3d`, per-element masks) like `dropout` in `ZERO_PRESERVING`, matched by "
        "qualified name. It freezes the residual stream of every block that has a residual.",
        "class B(nn.Module):\n"
        "    def __init__(s):\n"
        "        super().__init__(); s.conv = nn.Conv2d(8, 8, 3, padding=1)\n"
        "        s.sd = torchvision.ops.StochasticDepth(0.1, 'row')\n"
        "    def forward(s, x): return x + s.sd(s.conv(x))\n"
        "PIT(nn.Sequential(nn.Conv2d(3, 8, 1), B(), nn.Conv2d(8, 4, 1)), torch.randn(2, 3, 8, 8))\n"
        "# -> `stochastic_depth` (stochastic_depth) ... output channels of 1.conv are kept whole\n"
        "# (and, silently, those of 0: the residual add merges its group with the frozen one)",
    ),
    Cause(
        "grouped",
        r"^grouped conv",
        "grouped convolutions (groups > 1, not depthwise) are kept whole (fixed in 20614f8 "
        "for in == out channels: seeing it again is a regression or an in != out grouped conv)",
        "`_Analyser.conv` has two cases: depthwise (groups == in == out: keeps the producer's "
        "group) and any other groups > 1: freezes its input group (warned) and makes its own "
        "output a frozen group (silently); `export_conv` raises for a sliced grouped conv. "
        "Missing rule: a grouped conv with in == out channels could share one group with its "
        "producer pruned in whole blocks of in/groups channels (one mask entry per conv group, "
        "rep = group width, as depthwise is the group width 1 case), or keep the group count "
        "and prune the same number of channels per group. Every RegNet/ResNeXt bottleneck "
        "(conv a -> grouped conv b) loses both inner widths; only the stage-level residual "
        "streams stay searchable.",
        "PIT(nn.Sequential(nn.Conv2d(3, 8, 1), nn.Conv2d(8, 8, 3, padding=1, groups=2),\n"
        "                  nn.Conv2d(8, 4, 1)), torch.randn(2, 3, 8, 8))\n"
        "# -> `_1` (grouped conv, groups=2) ... output channels of 0 are kept whole",
    ),
    Cause(
        "layernorm",
        r"over other dims than the channels$|^layer_norm$|^layer_norm on other parameters",
        "LayerNorm over more than the channel dim, or `F.layer_norm` outside a LayerNorm",
        "A LayerNorm over exactly the channel dim (channels last: `nn.LayerNorm`, or "
        "`F.layer_norm` inside an `nn.LayerNorm` subclass on its own weight and bias, like "
        "ConvNeXt's LayerNorm2d) is searched: computed over the kept channels in the search "
        "network, sliced on export. Over more dims (`nn.LayerNorm([C, H, W])`), over a "
        "non-channel dim, or a bare `F.layer_norm` in a user forward, it still freezes: its "
        "statistics mix the channels and there is no module to slice.",
        "PIT(nn.Sequential(nn.Conv2d(3, 8, 1), nn.LayerNorm([8, 4, 4]), nn.Conv2d(8, 2, 1)),\n"
        "    torch.randn(2, 3, 4, 4))\n"
        "# -> `_1` (module LayerNorm over other dims than the channels) ... 0 are kept whole",
    ),
    Cause(
        "fresh_dim1",
        r"^operands with channels on different dims$",
        "misleading reason: a constant built in the forward gets a layout on dim 1, even in "
        "channels-last code (fixed: such tensors are now untracked; seeing it is a regression)",
        "The untracked fallback of `visit_function` gives a tensor made without tracked inputs "
        "(ViT's `class_token.expand(n, -1, -1)`) a new frozen group on dim 1 (`freeze_inputs` "
        "keeps the input's channel dim since this run). In channels-last code ([N, L, C] "
        "tokens) dim 1 is the token dim, so the next add sees operands 'with channels on "
        "different dims'. The channels must be frozen anyway (a per-channel constant, see "
        "'per-channel parameters'), so nothing is lost, but the warning names the wrong cause. "
        "Fix: leave such tensors untracked (the per-channel-constant rule of `binary` then "
        "names the right cause) and give a cat's untracked operands the tracked operands' "
        "channel dim.",
        "class C(nn.Module):  # tokens [N, L, C]\n"
        "    def __init__(s):\n"
        "        super().__init__(); s.fc1 = nn.Linear(8, 8); s.head = nn.Linear(8, 2)\n"
        "        s.tok = nn.Parameter(torch.zeros(1, 1, 8))\n"
        "    def forward(s, x): h = s.fc1(x); return s.head(h + s.tok.expand(x.shape[0], 5, -1))\n"
        "PIT(C(), torch.randn(2, 5, 8))\n"
        "# -> `add` (operands with channels on different dims) ... fc1 kept whole",
    ),
    Cause(
        "per_channel_param",
        r"^per-channel constant operand$|^parameter also used elsewhere$",
        "a per-channel constant that is not a tensor read with get_attr, or such a tensor "
        "read elsewhere too",
        "`binary` records a Parameter/buffer read directly (get_attr) and broadcast along the "
        "channel dim (ConvNeXt's `layer_scale * y`, a learnable bias) to be sliced on export. "
        "Anything else varying along the channels (a tensor computed in the forward, an "
        "expanded or reshaped parameter) would keep its width after pruning, and a parameter "
        "that other ops read too could not be cut for the elementwise op alone: frozen.",
        "class LS(nn.Module):\n"
        "    def __init__(s):\n"
        "        super().__init__(); s.conv = nn.Conv2d(3, 8, 1); s.head = nn.Conv2d(8, 2, 1)\n"
        "        s.gamma = nn.Parameter(torch.ones(8))\n"
        "    def forward(s, x): return s.head(s.gamma.view(8, 1, 1) * s.conv(x))\n"
        "PIT(LS(), torch.randn(2, 3, 8, 8))\n"
        "# -> `mul` (per-channel constant operand) ... output channels of conv kept whole",
    ),
    Cause(
        "channel_count",
        r"^channel count used outside a reshape of its channels$",
        "a channel count read from a tensor's shape sizes another tensor",
        "`B, G, P, D = x.shape` gives D, x's channel count, which shrinks when x's channels "
        "are pruned. Used to reshape a tensor of the same groups it stays right; MaxViT's "
        "attention reshapes its heads' output (frozen: the heads split the channel dim) with "
        "it, `out.reshape(B, G, P, D)`, which would fail after pruning x: x's channels are "
        "frozen. (Once its LayerNorms were searched, this crashed the export of maxvit_t, "
        "caught by `export(check=True)`: the rule came with that change.)",
        "# torchvision.models.maxvit_t(): `getitem_3` (channel count used outside a reshape\n"
        "# of its channels)\n"
        "# keeps each block's residual stream whole",
    ),
    Cause(
        "shuffle",
        r"^reshape that splits or moves the channel dim$",
        "channel shuffle (`view` splitting the channel dim)",
        "ShuffleNetV2's `channel_shuffle` is `view(n, g, c/g, h, w) -> transpose(1, 2) -> "
        "view(n, c, h, w)`: `map_reshape` only merges the channel dim with the dims after it, "
        "never splits it, so the first view freezes both branches of the block's cat. The "
        "shuffle is a fixed channel permutation, which a Layout (contiguous segments) cannot "
        "describe (the following `x.chunk(2, dim=1)` is understood, its input being frozen "
        "already). Missing rule: a permutation-aware layout (or recognising "
        "split->transpose->merge as an interleave of the g segments, pruned together). "
        "MaxViT lands here too: its attention reshapes the `to_qkv` output into heads, "
        "which splits the channel dim.",
        "class S(nn.Module):\n"
        "    def __init__(s):\n"
        "        super().__init__(); s.a = nn.Conv2d(3, 8, 1); s.b = nn.Conv2d(8, 4, 1)\n"
        "    def forward(s, x):\n"
        "        y = s.a(x); n, c, h, w = y.shape\n"
        "        return s.b(y.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w))\n"
        "PIT(S(), torch.randn(2, 3, 8, 8))\n"
        "# -> `view` (reshape that splits or moves the channel dim) ... output channels of a",
    ),
    Cause(
        "cat_token",
        r"^cat with an unsearched operand along another dim$|"
        r"^cat with channels on different dims$",
        "`cat` along the tokens with an unsearched operand (ViT class token)",
        "ViT concatenates its class token (`class_token.expand(n, -1, -1)`, [N, 1, C]) with "
        "the patch tokens [N, L, C] along dim 1. The expanded token keeps all C channels "
        "while the patch tokens would be pruned, so the channels are frozen; the warning now "
        "names this cat (it named an add 'with channels on different dims' before). Slicing "
        "the token would need a rule for `expand` of a parameter. In ViT it changes nothing: "
        "`nn.MultiheadAttention` (a leaf module) reads the residual stream whole anyway.",
        "class T(nn.Module):\n"
        "    def __init__(s):\n"
        "        super().__init__(); s.proj = nn.Conv2d(3, 8, 2, 2); s.fc = nn.Linear(8, 2)\n"
        "        s.cls = nn.Parameter(torch.zeros(1, 1, 8))\n"
        "    def forward(s, x):\n"
        "        t = s.proj(x).flatten(2).transpose(1, 2)\n"
        "        t = torch.cat([s.cls.expand(t.shape[0], -1, -1), t], dim=1)\n"
        "        return s.fc(t[:, 0])\n"
        "PIT(T(), torch.randn(2, 3, 8, 8))\n"
        "# -> `cat` (cat with an unsearched operand along another dim) ... proj kept whole",
    ),
    Cause(
        "tv_wrapped",
        r"^_patch_merging_pad$|^_get_relative_position_bias$|"
        r"^shifted_window_attention$",
        "torchvision's fx-wrapped Swin helpers are opaque",
        "`shifted_window_attention`, `_patch_merging_pad` and `_get_relative_position_bias` "
        "are `torch.fx.wrap`ped, so they are single unknown calls. Now that Swin's LayerNorms "
        "are searched, `shifted_window_attention` is where each block's residual stream "
        "freezes: correct, it reshapes q/k/v into heads (splitting the channel dim) and reads "
        "the stream through its own qkv/proj weights passed as tensors. "
        "`_get_relative_position_bias` (a per-head table indexed by the `cpb_mlp.2` output) "
        "freezes that head-count output, also correctly.",
        "# torchvision.models.swin_t(): `shifted_window_attention` freezes the residual stream,\n"
        "# swin_v2_t(): `_get_relative_position_bias` freezes features.N.M.attn.cpb_mlp.2",
    ),
    Cause(
        "chunk",
        r"^chunk$",
        "`chunk` on the channel dim (attention q/k/v split)",
        "`chunk`/`split` have no rule, so `visit_function` freezes their input (MaxViT's "
        "`to_qkv(x).chunk(3, dim=-1)`). A rule could cut the layout's segments when the split "
        "points fall on segment boundaries (or split a group into sub-groups); for attention the "
        "following head reshape splits the channel dim anyway, so q/k/v stay frozen there.",
        "class C(nn.Module):\n"
        "    def __init__(s):\n"
        "        super().__init__(); s.a = nn.Conv2d(3, 8, 1); s.b = nn.Conv2d(4, 4, 1)\n"
        "    def forward(s, x):\n"
        "        y1, y2 = s.a(x).chunk(2, dim=1); return s.b(y1) + s.b(y2)\n"
        "PIT(C(), torch.randn(2, 3, 8, 8))\n"
        "# -> `chunk` (chunk) ... output channels of a are kept whole",
    ),
    Cause(
        "swapaxes",
        r"^swapaxes$|^swapdims$|^movedim$",
        "`swapaxes` / `swapdims` / `movedim` are not aliases of transpose/permute",
        "`_ALIASES` maps no `swapaxes`/`swapdims` to `transpose` (and `movedim` has no rule), "
        "so a channel-moving op that `permute` would handle freezes instead (MaxViT's "
        "`SwapAxes` module). Fix: add the aliases (and a `movedim` case in `permute`).",
        "class W(nn.Module):\n"
        "    def __init__(s):\n"
        "        super().__init__(); s.a = nn.Conv2d(3, 8, 1); s.fc = nn.Linear(8, 2)\n"
        "    def forward(s, x): return s.fc(s.a(x).swapaxes(1, 3))\n"
        "PIT(W(), torch.randn(2, 3, 4, 4))   # with .transpose(1, 3): 1 group, no warning\n"
        "# -> `swapaxes` (swapaxes) ... output channels of a are kept whole",
    ),
    Cause(
        "namedtuple_output",
        r"Outputs$|^function <class ",
        "namedtuple outputs warn (spuriously)",
        "GoogLeNet/Inception v3 in train mode return `GoogLeNetOutputs(...)`/"
        "`InceptionOutputs(...)`: the namedtuple constructor is a call_function node that no "
        "rule knows, so it freezes (with a warning) the classifier layers that the graph "
        "output would freeze anyway (silently). Harmless, but noise. Fix: treat a "
        "tuple/namedtuple constructor whose only user is the output node like the output.",
        "Out = collections.namedtuple('Out', ['logits', 'aux'])\n"
        "class N(nn.Module):\n"
        "    def __init__(s):\n"
        "        super().__init__(); s.a = nn.Conv2d(3, 8, 1)\n"
        "        s.fc = nn.Linear(8, 2); s.aux = nn.Linear(8, 2)\n"
        "    def forward(s, x): h = s.a(x).mean((2, 3)); return Out(s.fc(h), s.aux(h))\n"
        "PIT(N(), torch.randn(2, 3, 4, 4))\n"
        "# -> `out` (function <class '__main__.Out'>) ... output channels of fc are kept whole",
    ),
]


def cause_of(reason: str) -> Cause | None:
    for cause in CAUSES:
        if re.search(cause.pattern, reason):
            return cause
    return None


def plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def root_causes(results: list[Result]) -> list[str]:
    """Markdown: every cause seen in ``results``, by number of models affected."""
    by_cause: dict[str, list[str]] = {}
    unknown: dict[str, list[str]] = {}
    for r in results:
        for w in r.warnings:
            m = re.match(r"`[^`]*` \((.*)\)$", w)
            reason = m[1] if m else w
            cause = cause_of(reason)
            bucket = by_cause.setdefault(cause.key, []) if cause else unknown.setdefault(reason, [])
            if r.model not in bucket:
                bucket.append(r.model)
    lines: list[str] = []
    known = {c.key: c for c in CAUSES}
    ordered = sorted(by_cause.items(), key=lambda kv: -len(kv[1]))
    for i, (key, models) in enumerate(ordered, 1):
        c = known[key]
        lines += [f"### {i}. {c.title} ({plural(len(models), 'model')})", "",
                  f"Models: {', '.join(models)}.", "", c.diagnosis, "", "```python",
                  c.repro, "```", ""]  # fmt: skip
    for reason, models in unknown.items():
        lines += [f"### unclassified: `{reason}` ({plural(len(models), 'model')})", "",
                  f"Models: {', '.join(models)}.", ""]  # fmt: skip
    return lines


LATENT = """### Found while diagnosing: `op_name` accepts any package whose name starts with "torch"

Not hit by a torchvision model, but a wrong conversion (caught only by `export(check=True)`):
`op_name` keeps call_function targets whose `__module__` `startswith("torch")`, which also
matches `torchvision`, `torchaudio` and any third-party `torch*` package, and then maps them
by bare `__name__`. An fx-wrapped function of such a package named like a torch op gets that
op's rule. Fix: accept `module == "torch" or module.startswith("torch.")` and list the known
non-torch functions (torchvision's `stochastic_depth`, ...) by qualified name.

```python
def relu(x):                     # named like torch.relu, but not zero-preserving
    return x + 1.0
relu.__module__ = "torchmylib"   # e.g. a function of torchvision / torchaudio / torch_foo
torch.fx.wrap("relu")            # at module level
class Net(nn.Module):
    def __init__(s): super().__init__(); s.a = nn.Conv2d(3, 8, 1); s.b = nn.Conv2d(8, 4, 1)
    def forward(s, x): return s.b(relu(s.a(x)))
s = PIT(Net(), torch.randn(2, 3, 4, 4))
with torch.no_grad():
    for p in s.nas_parameters(): p.uniform_()
s.export(check=True)  # RuntimeError: the exported network differs ... (treated as a ReLU)
```"""


HISTORY = """## Earlier runs

The first runs of this benchmark (same command, engine at 7d3aa9c) also converted and exported
80 of 80 models exactly, but 51 of 80 had frozen regions. Two causes have been fixed since:

- torchvision's fx-wrapped `stochastic_depth` froze the residual stream of every block with
  stochastic depth (19 models: all EfficientNets, ConvNeXts, Swin v1, MaxViT; e.g.
  efficientnet_b0 67/82 searchable layers, 81/82 now): fixed in b67f6c4 (it is zero- and
  channel-preserving);
- grouped convolutions froze their input and output (18 models: all RegNets and ResNeXts; e.g.
  regnet_x_400mf 27/72 searchable layers, 71/72 now): fixed in 20614f8 (grouped convs with
  as many outputs as inputs are searched in whole groups).

The run before this one (engine at 20614f8) had 22 of 80 models with frozen regions: two of
them only through spurious warnings. googlenet and inception_v3 return a namedtuple in
training mode, which froze (and named) their output layers; structured outputs now keep
their fields' layouts and only the graph output fixes them, silently. Freezes of groups that
were already frozen also warned again: convnext_tiny 42 warnings, swin_t 36, maxvit_t 83
then; 22, 4, 26 now. Every model has the same searchable layers as in that run.

The run before this one (engine at 523eba0) had 20 of 80 models with frozen regions. Since
then LayerNorm over the channel dim is searched (computed over the kept channels, sliced on
export) and per-channel parameters read directly (ConvNeXt's layer scale) are sliced on
export: the 4 ConvNeXts have no frozen region left (convnext_tiny 18/59 searchable layers
then, 58/59 now; convnext_base 36/113, 112/113 now), not bitwise equal at init any more
(<= 9.4e-7: the masked LayerNorm computes its statistics with its own ops). MaxViT, Swin and
ViT keep the same searchable layers: they freeze at their attention instead of at the
LayerNorms (MaxViT: a channel count read from the normalised stream sizes the heads'
output; Swin: the wrapped `shifted_window_attention`; ViT: the class-token cat), with
reasons that now name it."""


PATTERNS = """## Patterns: searched or frozen

What the analysis decides for the patterns that real networks use (one test file per
pattern in `tests/nas/graph/`). Frozen channels are kept whole; the conversion goes on and
one warning names the node, unless the channels are kept whole anyway (graph input/output,
`exclude=`).

- **chunk / tensor_split into n equal pieces on the channel dim** (`a, b = y.chunk(2, 1)`,
  GLU, CSP-style halves): searched. A piece boundary inside a channel group *refines* the
  group (cuts it in two, in every layer that shares it), and the pieces are tied to one
  mask, so each piece keeps the same number of channels: the user's unchanged forward then
  still cuts the pruned tensor between the same channels, and export stays exact
  (`test_split_chunk.py`). A cut inside a grouped conv's group, or inside one channel's run
  of flattened features, freezes instead.
- **Fixed cuts of the channel dim** (`torch.split(y, [8, 8], 1)` with sizes written in the
  forward, `torch.split(y, 8, 1)`, `chunk`/`tensor_split` into unequal pieces,
  `tensor_split(y, [8, 12], 1)`, `y.narrow(1, 0, 8)`; PLiNIO's grouped conv spelled as two
  convs on `x[:, 0:8]` and `x[:, 8:16]`): searched, as PLiNIO does. The group is cut at
  the bounds into pieces searched apart (nothing tied, nothing kept whole). Where pruning
  moved a bound, the export rewrites the module whose own forward makes the call: it
  becomes a `torch.fx.GraphModule` of that forward (its children, parameters and buffers
  the module's own, under the same names; the rest of the network keeps its classes) whose
  call cuts the kept widths (`torch.split(y, [5, 6], 1)`, `y[:, 0:5]`, `narrow(1, 0, 5)`).
  The arch spec lists these under `cuts` (module, position of the call in its forward, the
  pieces' widths and kept widths), so `apply_arch`, `restore`/`load_network` and the ONNX
  export rebuild and run the same network; the rewrite is logged (logger
  `lightning_dnas.nas.spec`, INFO, naming the node and the widths). A network whose cuts
  still fit the kept channels exports as the user's own classes, unchanged
  (`test_split_literal.py`, `test_cuts.py`, `test_split_chunk.py`, `test_narrow.py`,
  `tests/nas/pit/test_plinio_cuts.py`: PLiNIO's grouped-conv and ResNet1D shapes, nothing
  frozen). Sizes the forward computes from a layer's attributes (`[4,
  self.conv.out_channels - 4]`) are cut the same way: a masked layer of the search network
  answers for its layer's attributes (the unpruned values), and `apply_arch` rewrites a
  forward before it slices the layers, so its trace reads the recorded widths
  (`test_split_literal.py`). When the module's forward traced alone (its submodules as
  calls) does not make the same calls as in the network (a branch on an argument the
  caller leaves out), the forward is kept and the channels before a bound that pruning
  would move are kept whole instead (`split(y, 8, 1)`: those before the last piece;
  `narrow(1, s, n)`: the first s + n), named in the freeze warning. **Explicit sizes held
  by a module attribute** (timm MixNet's `torch.split(x, self.splits, 1)`) need no
  rewrite: the arch spec lists the kept width of each piece under `sizes` and `apply_arch`
  sets the attribute (this assumes the forward reads the attribute only for the split).
  `unbind` of the channel dim freezes: a pruned channel would remove one of its results.
  On another dim every piece keeps the input's groups.
- **LayerNorm over the channel dim** (ConvNeXt, Swin, MaxViT; channels-last `nn.LayerNorm(C)`
  and LayerNorm2d-style `F.layer_norm` inside an `nn.LayerNorm` subclass): searched. The
  search network computes it over the kept channels only (masked mean and variance, output
  masked; the mask gets gradients through the statistics), which is what the exported norm,
  sliced to the kept channels, computes (`test_layer_norm.py`). Over more dims than the
  channels, or a bare `F.layer_norm`, it freezes. LayerNorm parameters are not counted by the
  cost models (like BatchNorm's).
- **GroupNorm** (`nn.GroupNorm`, a subclass, timm's `GroupNormAct` / `GroupNorm` through
  their `F.group_norm` on their own weight, bias and `num_groups`): searched in whole
  groups. A norm of G groups of k = C/G channels gives its input's channel groups units of
  k (one mask entry per norm group, tied through the layers that share the channels, as
  for a grouped conv); the mask is folded into its affine parameters, so a removed group
  reads zero and a kept one keeps every channel its statistics read: the export, a copy
  of the module (class, activation, eps, every attribute) with the kept channels and
  `num_groups` = kept / k, computes the same (`test_norms.py`). Pruning channels inside a
  group would change its statistics (exact only with statistics over the kept channels,
  as for LayerNorm, and every group keeping the same width): not done. A unit straddling
  two channel groups of the input (`cat` of 3 + 5 channels into groups of 2), a GroupNorm
  of one group (timm's `GroupNorm1`: its one unit is every channel), a bare `F.group_norm`
  or one on other tensors or another group count than its module's: frozen. The forward
  is assumed to pass the module's `num_groups` (the export changes it), as timm's do.
  BatchNorm/InstanceNorm are masked companions, a per-channel PReLU is sliced on export.
- **Linear subclasses** whose forward is exactly `F.linear(input, self.weight, self.bias)`
  (timm's `Linear` classifier): a Linear layer, searched and exported as `nn.Linear`; any
  other subclass is traced through and its `F.linear` freezes (`test_linear_subclass.py`).
- **BatchNorm subclasses with their own forward** (timm's `BatchNormAct2d`: `F.batch_norm`
  on its own tensors, then its `drop` and `act`): traced through, the `F.batch_norm` call
  makes the module a companion; the mask of the conv before it is folded into its affine
  parameters, its activation is analysed as a node of its own, and the export is a copy of
  the module (class, activation and every attribute kept) cut to the kept channels
  (`test_norms.py`). `F.batch_norm` on other tensors, or outside a BatchNorm, freezes.
- **Constant slices of the channel dim** (GhostNet's `out[:, :out_chs]`, DPN's
  `x[:, :k]` / `x[:, k:]`, ReXNet's `x[:, 0:c]`): fixed cuts (above): the group is cut at
  the bounds, every piece searched, the export moving the bounds where pruning moved them;
  a slice reaching the end of the dim (or past it) from 0 is the identity
  (`test_indexing.py`). A step, a negative or a computed bound, an integer index: frozen.
- **Concat then add** (`cat([p, q]) + r`, DPN's dual paths): r's groups are cut at the
  cat's boundaries so that each piece shares the mask of the operand it meets
  (`test_residual.py`); a cut inside a grouped conv's unit or a flattened channel freezes.
- **Per-channel parameters used directly** (ConvNeXt layer scale `gamma * y`, a learnable
  bias `y + beta`, any Parameter/buffer read with get_attr and broadcast along the channel
  dim by add/sub/mul/div): sliced on export (the module keeps its class; the arch spec lists
  them under `parameters`). An add maps pruned zeros to `beta`, so the next mixing layer
  re-masks its input (`test_layer_scale.py`). A 1-D one reshaped for the op alone with `-1`
  on the channel dim (timm ConvNeXt's `x.mul(self.gamma.reshape(1, -1, 1, 1))`) too. Also
  read elsewhere, or computed otherwise in the forward (ViT's expanded class token, a reshape
  spelling the width out): frozen (`test_scalar_mul.py`). A scalar or a one-channel
  broadcast (`x * gate[N,1,H,W]`) keeps the group.
- **Channel counts read from a shape** (`n, c, h, w = x.shape`): may size a reshape of
  tensors with the same channel groups; used anywhere else they freeze the counted channels.
- **Channel shuffle** (ShuffleNetV2 view-transpose-view): interleaves groups: frozen
  (`test_channel_shuffle.py`); the branches' inner widths stay searched.
- **namedtuple / dict / tuple outputs** (GoogLeNet, Inception v3 in training mode): fields
  keep their layouts; they are fixed only where they reach the output, without a warning
  (`test_multi_io.py`)."""


def input_size(name: str) -> int:
    """Side of the square example input: small where the model accepts it."""
    if name.startswith("inception"):
        return 299  # the training-mode aux head needs the full 17x17 Mixed_6e map
    if name.startswith("maxvit"):
        return 224  # every stage's map must be a multiple of the 7x7 partition
    if name.startswith("vit_"):
        return 4 * int(name.rsplit("_", 1)[1])  # 2x2 patches (image_size must match)
    if name == "googlenet":
        return 96
    return 64


def build(name: str, size: int) -> nn.Module:
    kwargs: dict[str, Any] = {"weights": None}
    if name.startswith("vit_"):
        kwargs["image_size"] = size
    if name in ("googlenet", "inception_v3"):
        kwargs["init_weights"] = True  # silences torchvision's FutureWarning
    return torchvision.models.get_model(name, **kwargs)


def tensors(out: Any) -> list[Tensor]:
    if isinstance(out, Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in tensors(o)]
    if isinstance(out, dict):
        return [t for o in out.values() for t in tensors(o)]
    return []


def rel_diff(a: Any, b: Any) -> tuple[bool, float]:
    """(bitwise equal, max abs difference / max(max |a|, 1e-12)) over all outputs."""
    ta, tb = tensors(a), tensors(b)
    if len(ta) != len(tb) or any(x.shape != y.shape for x, y in zip(ta, tb, strict=True)):
        return False, float("inf")
    equal = all(torch.equal(x, y) for x, y in zip(ta, tb, strict=True))
    worst = 0.0
    for x, y in zip(ta, tb, strict=True):
        if x.numel():
            scale = max(float(x.abs().max()), 1e-12)
            worst = max(worst, float((x - y).abs().max()) / scale)
    return equal, worst


def first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:300]


_FREEZE = re.compile(  # one line of the converter's grouped freeze warning
    r"  - `(?P<node>[^`]*)` \((?P<why>.*)\) is not searchable; "
    r"the output channels of (?P<layers>.*) are kept whole"
)


def summarise_warning(message: str) -> tuple[str, str, list[str]]:
    """(node, reason with addresses stripped, layers kept whole) of a freeze warning."""
    m = _FREEZE.match(message)
    if m is None:
        return "", message.split("\n")[0], []
    why = re.sub(r"<function (\S+) at 0x[0-9a-f]+>", r"\1", m["why"])
    why = re.sub(r"<built-in (?:function|method) (\S+)[^>]*>", r"\1", why)
    return m["node"], why, [s.strip() for s in m["layers"].split(",")]


def conv_linear_params(net: nn.Module, names: list[str]) -> int:
    total = 0
    for name in names:
        mod = net.get_submodule(name)
        for sub in mod.modules():  # an exported Conv1d may be Sequential(pad, conv)
            if isinstance(sub, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
                total += sub.weight.numel() + (sub.bias.numel() if sub.bias is not None else 0)
    return total


def run_model(name: str, seed: int = 0, make: Any = None) -> Result:
    """One model through the protocol; ``make(name, size)`` builds it (default: torchvision,
    ``size`` from :func:`input_size`; another zoo passes ``(make, size_of)``)."""
    res = Result(model=name)
    make, size_of = make or (build, input_size)
    size = size_of(name)
    res.input = f"2x3x{size}x{size}"
    stage = "build"
    try:
        torch.manual_seed(seed)
        model = make(name, size)
        res.params_m = sum(p.numel() for p in model.parameters()) / 1e6
        x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(seed))

        stage = "convert"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            t0 = time.perf_counter()
            search = PIT(model, example_input=x, cost={"params": "params", "macs": "macs"})
            res.convert_s = time.perf_counter() - t0
        res.converts = True
        res.groups = len(search.channel_masks)
        calls = search._first_calls  # private: the analysed Conv/Linear layers
        res.layers = len(calls)
        res.kept_whole = [lc.name for lc in calls if not search._graph.searchable(lc.out_layout)]
        res.searchable_layers = len(calls) - len(res.kept_whole)
        everything = conv_linear_params(model, [lc.name for lc in calls])
        if everything:
            res.searchable_params = 1 - conv_linear_params(model, res.kept_whole) / everything
        frozen: set[str] = set()
        for w in caught:
            msg = str(w.message)
            if not msg.startswith("lightning_dnas"):
                continue
            res.raw_warnings.append(msg)
            # One warning per conversion, one line per freeze event: summarised by line.
            for line in msg.splitlines()[1:]:
                if line.startswith("  - "):
                    node, why, layers = summarise_warning(line)
                    res.warnings.append(f"`{node}` ({why})" if node else why)
                    frozen.update(layers)
        res.frozen_layers = sorted(frozen)

        stage = "equal"
        model.eval()
        search.eval()
        with torch.no_grad():
            ref = model(x)
            out = search(x)
        res.init_equal, res.init_rel_diff = rel_diff(ref, out)
        del ref, out

        stage = "step"
        search.train()
        out = search(x)
        loss = sum(t.float().sum() for t in tensors(out)) + 1e-9 * search.soft_cost("params")
        loss.backward()
        nas = list(search.nas_parameters())
        nonzero = sum(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in nas)
        res.mask_grads = f"{nonzero}/{len(nas)}"
        res.step_ok = True
        del out, loss
        search.zero_grad(set_to_none=True)

        stage = "export"
        full = search.hard_cost("params")
        with torch.no_grad():
            for p in search.nas_parameters():
                p.zero_()
        res.removable = 1 - search.hard_cost("params") / full if full else None
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in search.nas_parameters():
                p.copy_(torch.rand(p.shape, generator=gen, dtype=p.dtype))
        kept = search.hard_cost("params")
        res.params_kept = kept / full if full else None
        t0 = time.perf_counter()
        try:
            exported = search.export(check=True)
        except RuntimeError as err:
            res.export_s = time.perf_counter() - t0
            res.export_ok = False
            res.error = first_line(err)
            res.stage = "export"
            # Measure the difference anyway, without the check.
            try:
                exported = search.export(check=False)
                search.eval()
                exported.eval()
                with torch.no_grad():
                    _, res.export_rel_diff = rel_diff(search(x), exported(x))
            except Exception:  # best effort, the failure is recorded
                pass
            return res
        res.export_s = time.perf_counter() - t0
        search.eval()
        exported.eval()
        with torch.no_grad():
            _, res.export_rel_diff = rel_diff(search(x), exported(x))
        res.export_ok = res.export_rel_diff <= EXPORT_TOL
        res.cost_ok = conv_linear_params(exported, [lc.name for lc in calls]) == round(kept)
    except Exception as err:  # one model's failure must not stop the run
        res.error = first_line(err)
        res.stage = stage
        if stage == "step":
            res.step_ok = False
        if stage not in ("build", "convert"):
            tb = traceback.extract_tb(err.__traceback__)[-1]
            res.error += f" [{Path(tb.filename).name}:{tb.lineno}]"
    return res


def fmt(v: float | None, spec: str = ".2f") -> str:
    return "-" if v is None else format(v, spec)


def yes(v: bool | None) -> str:
    return "-" if v is None else ("yes" if v else "**no**")


def reasons(res: Result) -> str:
    """Freeze reasons with counts, e.g. ``12x function stochastic_depth``."""
    kinds: Counter[str] = Counter()
    for w in res.warnings:
        m = re.match(r"`[^`]*` \((.*)\)$", w)
        kinds[re.sub(r"groups=\d+", "groups=N", m[1]) if m else w] += 1
    return "; ".join(f"{n}x {k}" for k, n in kinds.most_common())


HEADER = ("| model | input | params M | converts | convert s | groups | searchable layers "
          "| freeze warnings | init equal (rel diff) | search step (mask grads) "
          "| export exact (rel diff) | export s | params kept | cost = export "
          "| removable |")  # fmt: skip
RULE = "|" + "---|" * (HEADER.count("|") - 1)


def row(r: Result) -> str:
    if not r.converts:
        return (f"| {r.model} | {r.input} | {r.params_m:.1f} | **no**: {r.error} "
                "| - | - | - | - | - | - | - | - | - | - | - |")  # fmt: skip
    close = "yes" if (r.init_rel_diff or 0) <= EQUAL_TOL else "**no**"
    equal = "yes (bitwise)" if r.init_equal else f"{close} ({fmt(r.init_rel_diff, '.1e')})"
    if r.init_equal is None:
        equal = "-"
    step = "-" if r.step_ok is None else (f"yes ({r.mask_grads})" if r.step_ok else "**no**")
    export = "-" if r.export_ok is None else f"{yes(r.export_ok)} ({fmt(r.export_rel_diff, '.1e')})"
    if r.stage in ("equal", "step", "export") and r.error and r.export_ok is not False:
        export += f" — {r.stage} failed: {r.error}"
    elif r.export_ok is False:
        export += f" — {r.error}"
    searchable = f"{r.searchable_layers}/{r.layers}"
    return (f"| {r.model} | {r.input} | {r.params_m:.1f} | yes | {fmt(r.convert_s)} | {r.groups} "
            f"| {searchable} | {len(r.warnings)} | {equal} | {step} | {export} "
            f"| {fmt(r.export_s)} | {fmt(r.params_kept)} | {yes(r.cost_ok)} "
            f"| {fmt(r.removable, '.3f')} |")  # fmt: skip


def summary(results: list[Result]) -> list[str]:
    n = len(results)
    conv = [r for r in results if r.converts]
    equal = [r for r in conv if r.init_equal or (r.init_rel_diff is not None
                                                  and r.init_rel_diff <= EQUAL_TOL)]  # fmt: skip
    step = [r for r in conv if r.step_ok]
    exact = [r for r in conv if r.export_ok]
    frozen = [r for r in conv if r.warnings]
    no_search = [r for r in conv if r.groups == 0]
    cost = [r for r in conv if r.cost_ok]
    lines = [
        f"- **{len(conv)} of {n}** models convert"
        + (
            f" (fail: {', '.join(r.model for r in results if not r.converts)})"
            if len(conv) < n
            else ""
        ),
        f"- **{len(equal)} of {len(conv)}** converted networks equal the original at init "
        f"(eval mode, masks = 1; {sum(bool(r.init_equal) for r in conv)} bitwise)",
        f"- **{len(step)} of {len(conv)}** run a search step (forward, loss + 1e-9 * soft "
        "cost, backward)",
        f"- **{len(exact)} of {len(conv)}** export exactly with random masks "
        f"(`export(check=True)` passes and exported == masked within {EXPORT_TOL:g})"
        + (
            f"; fail: {', '.join(r.model for r in conv if not r.export_ok)}"
            if len(exact) < len(conv)
            else ""
        ),
        f"- **{len(cost)} of {len(exact)}** exact exports have "
        "`hard_cost('params')` == the exported Conv/Linear parameter count",
        f"- **{len(frozen)} of {len(conv)}** have frozen regions (freeze warnings)"
        + (
            f"; {len(no_search)} have no searchable group at all: "
            f"{', '.join(r.model for r in no_search)}"
            if no_search
            else ""
        ),
    ]
    removable = sorted(r.removable for r in conv if r.removable is not None)
    if removable:
        lines.append(f"- removable fraction: median {removable[len(removable) // 2]:.3f}, "
                     f"{sum(x >= 0.99 for x in removable)} of {len(removable)} models >= 0.99, "
                     f"{sum(x < 0.9 for x in removable)} below 0.90 (lowest "
                     f"{removable[0]:.3f})")  # fmt: skip
    causes: Counter[str] = Counter()
    models_by_cause: dict[str, list[str]] = {}
    for r in frozen:
        for k in sorted({re.sub(r"^\d+x ", "", part) for part in reasons(r).split("; ")}):
            causes[k] += 1
            models_by_cause.setdefault(k, []).append(r.model)
    if causes:
        lines.append("- freeze reasons (number of models):")
        for k, count in causes.most_common():
            lines.append(f"  - {count}: {k} ({', '.join(models_by_cause[k])})")
    return lines


def details(results: list[Result]) -> list[str]:
    out: list[str] = []
    for r in results:
        if not (r.warnings or r.error):
            continue
        out.append(f"### {r.model}")
        out.append("")
        if r.error:
            out.append(f"- failed at **{r.stage}**: `{r.error}`")
        if r.warnings:
            out.append(f"- {len(r.warnings)} freeze warnings naming {len(r.frozen_layers)} "
                       f"layers; reasons: {reasons(r)}")  # fmt: skip
            nodes = [w for w in r.warnings]
            shown = nodes[:8]
            out.append(
                "- frozen at: "
                + ", ".join(shown)
                + (f", ... ({len(nodes) - len(shown)} more)" if len(nodes) > 8 else "")
            )
            layers = r.kept_whole
            out.append(
                f"- all {len(layers)} Conv/Linear layers kept whole (named by a warning, "
                "frozen by a residual merge with a frozen group, grouped convs, the classifier): "
                + ", ".join(f"`{x}`" for x in layers[:12])
                + (f", ... ({len(layers) - 12} more)" if len(layers) > 12 else "")
            )
        out.append("")
    return out


def engine_version() -> str:
    """Commit of this checkout, with ``+ local changes`` when lightning_dnas/ differs from it."""
    try:
        run = functools.partial(subprocess.run, cwd=ROOT, capture_output=True, text=True)
        commit = run(["git", "log", "-1", "--format=%h %s"]).stdout.strip()
        dirty = run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "lightning_dnas"]
        ).stdout.strip()
    except OSError:
        return "unknown"
    return (commit or "unknown") + (" + local changes in lightning_dnas/" if dirty else "")


def write_markdown(
    path: Path,
    results: list[Result],
    command: str,
    total_s: float,
    skipped: list[str],
    engine: str,
) -> None:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Converter coverage: torchvision classification models",
        "",
        "Does `PIT(model, example_input=x)` take an unmodified network? Every model of "
        "`torchvision.models.list_models(module=torchvision.models)` with random weights "
        "(`weights=None`, seed 0), batch 2. Produced by `benchmarks/converter_coverage.py` "
        "(see its docstring for the exact protocol).",
        "",
        f"- command: `{command}`",
        f"- date: {now}; total {total_s / 60:.1f} min",
        f"- torch {torch.__version__}, torchvision {torchvision.__version__}, Python "
        f"{platform.python_version()}, {platform.machine()} CPU, torch.set_num_threads(1)",
        f"- engine: lightning_dnas at `{engine}` (when the run started)",
        f"- models: {len(results)}"
        + (f" (skipped as too large without `--all`: {', '.join(skipped)})" if skipped else ""),
        "",
        "## Summary",
        "",
        *summary(results),
        "",
        HISTORY,
        "",
        PATTERNS,
        "",
        "## Columns",
        "",
        "- *groups*: `len(search.channel_masks)`, searchable channel groups;",
        "- *searchable layers*: Conv/Linear layers whose output channels can be pruned / all "
        "Conv/Linear layers the analysis saw (a layer whose output reaches a frozen region, "
        "also through a residual add, is not searchable, and neither is the classifier: it "
        "feeds the graph output);",
        "- *freeze warnings*: number of `UserWarning`s naming a node that froze channels;",
        "- *init equal*: eval mode, masks at init (1): converted vs original model, max abs "
        f"difference / output scale (equal when <= {EQUAL_TOL:g});",
        "- *search step*: train-mode forward, `out.sum() + 1e-9 * soft_cost('params')`, "
        "backward; (mask parameters with a non-zero gradient / all);",
        "- *export exact*: nas parameters set to `U[0,1)`, `export(check=True)`; relative "
        "difference exported vs masked network (eval mode);",
        "- *params kept*: `hard_cost('params')` after / before the random masks;",
        "- *cost = export*: `hard_cost('params')` equals the exported Conv/Linear parameters;",
        "- *removable*: `1 - hard_cost('params')` with every mask at 0 (each channel group "
        "keeps one unit) / at init: the share of the Conv/Linear parameters the search can "
        "remove at most.",
        "",
        "## Results",
        "",
        HEADER,
        RULE,
        *(row(r) for r in results),
        "",
        "## Root causes of the frozen regions",
        "",
        "Grouped by cause, most models first. Each repro is a few lines run with "
        "`import collections, torch, torchvision; from torch import nn; "
        "from lightning_dnas import PIT`; the comment is the warning it gives.",
        "",
        *root_causes(results),
        LATENT,
        "",
        "## Failures and frozen regions per model",
        "",
        *details(results),
    ]
    # The timm section (benchmarks/timm_coverage.py) is another run's: kept as it is.
    old = path.read_text() if path.exists() else ""
    kept = old[old.index(TIMM_BEGIN):] if TIMM_BEGIN in old else ""
    path.write_text("\n".join(lines).rstrip() + "\n" + ("\n" + kept if kept else ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", help="comma-separated torchvision model names")
    parser.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK)}")
    parser.add_argument("--all", action="store_true", help="include the huge models")
    parser.add_argument("--output", help="Markdown report (default docs/COVERAGE.md on a "
                                         "full run, none otherwise)")  # fmt: skip
    parser.add_argument("--json", help="also dump the raw results as JSON to this file")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    available = torchvision.models.list_models(module=torchvision.models)
    if args.models:
        names = [n.strip() for n in args.models.split(",") if n.strip()]
        unknown = [n for n in names if n not in available]
        if unknown:
            parser.error(f"unknown models {unknown}; available: {', '.join(available)}")
    elif args.quick:
        names = QUICK
    else:
        names = [n for n in available if args.all or n not in HUGE]
    output = args.output or (
        None if (args.models or args.quick) else str(ROOT / "docs" / "COVERAGE.md")
    )

    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
          f"{len(names)} models", flush=True)  # fmt: skip
    engine = engine_version()  # the code imported above, unless edited since
    start = time.perf_counter()
    results: list[Result] = []
    for i, name in enumerate(names, 1):
        t0 = time.perf_counter()
        res = run_model(name)
        results.append(res)
        status = (
            "ok"
            if res.converts and res.export_ok and not res.error
            else (f"FAIL at {res.stage}: {res.error}" if res.error else "ok?")
        )
        print(f"[{i}/{len(names)}] {name}: {status}; groups={res.groups} "
              f"searchable={res.searchable_layers}/{res.layers} warnings={len(res.warnings)} "
              f"init_rel={fmt(res.init_rel_diff, '.1e')} "
              f"export_rel={fmt(res.export_rel_diff, '.1e')} "
              f"convert={fmt(res.convert_s)}s export={fmt(res.export_s)}s "
              f"({time.perf_counter() - t0:.1f}s)", flush=True)  # fmt: skip
        if res.warnings:
            print(f"    frozen: {reasons(res)}", flush=True)
        gc.collect()
    total = time.perf_counter() - start

    print()
    print(HEADER)
    print(RULE)
    for r in results:
        print(row(r))
    print()
    print("\n".join(summary(results)))
    command = "python benchmarks/converter_coverage.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    if output:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        skipped = [] if (args.all or args.models or args.quick) else sorted(HUGE)
        write_markdown(Path(output), results, command.strip(), total, skipped, engine)
        print(f"\nwrote {output}")
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in results], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
