"""Converter coverage on timm: how much of each timm family can PIT remove?

One small model per timm family (random weights, ``pretrained=False``: nothing is
downloaded), batch 2, through the same protocol as ``converter_coverage.py`` (convert,
init equality, a search step, an exact export with random masks, ``hard_cost == export``;
see its docstring), plus

- the *removable fraction*: ``1 - hard_cost("params")`` with every mask at 0 (each channel
  group keeps one unit) over ``hard_cost("params")`` at init, the share of the Conv/Linear
  parameters the search can remove at most (a layer with one searchable side counts: it
  shrinks to one unit there), and
- the *searchable params*: the parameters of the Conv/Linear layers whose output channels
  are searchable over those of all of them (a frozen wide layer, such as a head conv
  feeding an unsearchable classifier, shows here).

Usage::

    python benchmarks/timm_coverage.py                         # every family below
    python benchmarks/timm_coverage.py --models resnet18,efficientnet_b0
    python benchmarks/timm_coverage.py --output docs/COVERAGE.md --json out.json

``--output`` replaces the timm section at the end of that report (marked by
``converter_coverage.TIMM_BEGIN``, which a torchvision run keeps as it is).
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import platform
import sys
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

import converter_coverage as cov

# family -> model: the smallest common member of each family timm 1.0 offers.
FAMILIES = {
    "resnet": "resnet18", "resnet-d": "resnet26d", "seresnext": "seresnext26d_32x4d",
    "resnest": "resnest14d", "res2net": "res2net50_14w_8s", "regnetx": "regnetx_002",
    "regnety": "regnety_002", "resnet-gn": "resnet50_gn", "efficientnet": "efficientnet_b0",
    "efficientnet-gn": "efficientnet_b0_gn",
    "efficientnet_lite": "efficientnet_lite0", "mobilenetv2": "mobilenetv2_100",
    "mobilenetv3": "mobilenetv3_small_100", "mnasnet": "mnasnet_100", "fbnet": "fbnetc_100",
    "mixnet": "mixnet_s",
    "tinynet": "tinynet_e", "lcnet": "lcnet_050", "hardcorenas": "hardcorenas_a",
    "rexnet": "rexnet_100", "ghostnet": "ghostnet_100", "dpn": "dpn68",
    "cspnet": "cspresnet50", "cspdarknet": "cspdarknet53", "densenet": "densenet121",
    "dla": "dla34", "vovnet": "ese_vovnet19b_dw", "selecsls": "selecsls42b",
    "repvgg": "repvgg_a0", "mobileone": "mobileone_s0", "hrnet": "hrnet_w18_small",
    "convnext": "convnext_atto", "edgenext": "edgenext_xx_small",
    "mobilevit": "mobilevit_xxs", "vit": "vit_tiny_patch16_224",
    "deit": "deit_tiny_patch16_224",
}  # fmt: skip
# Models whose stem or token grid needs a larger input than 64x64.
SIZES = {"hrnet_w18_small": 128, "mobilevit_xxs": 128}
TOKEN_MODELS = ("vit_", "deit_")  # built with img_size = the input side (a 4x4 grid of patches)


# Measured by hand before the timm-driven rules (engine at 0ebb41e, same models and input).
HISTORY = """Before the rules these families drove (engine at 0ebb41e), searchable layers were:
efficientnet_b0 16/82, mobilenetv3_small_100 9/53, regnetx_002 0/45, cspresnet50 0/56,
dpn68 0/72, ghostnet_100 7/95, res2net50_14w_8s 61/150, resnet18 20/21. timm's
`BatchNormAct2d` (traced through: its `F.batch_norm` froze every conv before it) is now a
folded companion (234b304); constant channel slices and concat-then-add (GhostNet, DPN) are
searched (d4ad151); `split(x, k, 1)` with an open last piece (CSP, Res2Net) keeps only the
channels before the last cut, explicit sizes held by a module attribute (MixNet's
`self.splits`) are searched and rewritten on export, ConvNeXt's `gamma.reshape(1, -1, 1, 1)`
is sliced, and timm's `Linear` (an `nn.Linear` subclass calling `F.linear` on its own
tensors) is a layer (mixnet_s 19/124 -> 123/124, convnext_atto 12/41 -> 40/41,
cspresnet50 38/56 -> 55/56, ghostnet/mobilenetv3/lcnet/hardcorenas heads searched). Fixed
channel cuts are searched piece by piece since 45a417e (the export moves the forward's
bounds; before, the channels before a bound were kept whole): res2net50_14w_8s 77/150 ->
149/150 searchable layers (removable 0.905 -> 1.000), rexnet_100 64/76 -> 75/76, dpn68
removable 0.924 -> 0.995, CSPResNet/CSPDarkNet without a frozen region. The remaining
freezes, by cause: reshapes of the channel dim (ViT/DeiT heads, ResNeSt's radix softmax,
EdgeNeXt), ResNeSt's grouped conv, EdgeNeXt's channel counts, HRNet's Upsample module (not
in the op table); MobileViT does not trace (control flow on a traced value).
timm's `GroupNormAct` (resnet50_gn, efficientnet_b0_gn: `F.group_norm` in its forward) froze
every conv before it (resnet50_gn 0/54 searchable layers, removable 0.000; efficientnet_b0_gn
16/82, 0.116, engine at 87fc00a): it is searched in whole groups since 56a0709."""


def input_size(name: str) -> int:
    return SIZES.get(name, 64)


def build(name: str, size: int) -> nn.Module:
    kwargs: dict[str, Any] = {"pretrained": False}
    if name.startswith(TOKEN_MODELS):
        kwargs["img_size"] = size
    return timm.create_model(name, **kwargs)


def reason_counts(res: cov.Result) -> str:
    """The freeze reasons of one model, most frequent first (``12x function f``)."""
    return cov.reasons(res) or "-"


def table(results: list[cov.Result], family_of: dict[str, str]) -> list[str]:
    lines = [
        "| family | model | input | params M | converts | searchable layers | freeze warnings "
        "| init equal | export exact | cost = export | searchable params | removable "
        "| freeze reasons |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        fam = family_of.get(r.model, "")
        if not r.converts:
            lines.append(f"| {fam} | {r.model} | {r.input} | {r.params_m:.1f} | **no**: "
                         f"{r.error} | - | - | - | - | - | - | - | - |")  # fmt: skip
            continue
        equal = "-" if r.init_rel_diff is None else (
            ("yes" if r.init_rel_diff <= cov.EQUAL_TOL else "**no**")
            + f" ({r.init_rel_diff:.1e})")  # fmt: skip
        export = cov.yes(r.export_ok) + (f" — {r.stage}: {r.error}" if r.error else "")
        lines.append(
            f"| {fam} | {r.model} | {r.input} | {r.params_m:.1f} | yes "
            f"| {r.searchable_layers}/{r.layers} | {len(r.warnings)} | {equal} | {export} "
            f"| {cov.yes(r.cost_ok)} | {cov.fmt(r.searchable_params, '.3f')} "
            f"| {cov.fmt(r.removable, '.3f')} | {reason_counts(r)} |"
        )  # fmt: skip
    return lines


def summary(results: list[cov.Result]) -> list[str]:
    conv = [r for r in results if r.converts]
    exact = [r for r in conv if r.export_ok and not r.error]
    removable = [r.removable for r in conv if r.removable is not None]
    shares = sorted(r.searchable_params for r in conv if r.searchable_params is not None)
    causes: Counter[str] = Counter()
    for r in conv:
        for part in {p.split("x ", 1)[-1] for p in cov.reasons(r).split("; ") if p}:
            causes[part] += 1
    lines = [
        f"- **{len(conv)} of {len(results)}** models convert; **{len(exact)}** export exactly "
        f"with random masks; **{sum(bool(r.cost_ok) for r in conv)}** have hard_cost == export",
        f"- **{sum(not r.warnings for r in conv)} of {len(conv)}** have no frozen region",
        f"- removable fraction: median {sorted(removable)[len(removable) // 2]:.3f}, "
        f"{sum(x >= 0.99 for x in removable)} of {len(removable)} models >= 0.99, "
        f"{sum(x < 0.9 for x in removable)} below 0.90" if removable else "- removable: -",
        f"- searchable params (share in layers with searchable outputs): median "
        f"{shares[len(shares) // 2]:.3f}, {sum(x >= 0.9 for x in shares)} of {len(shares)} "
        f">= 0.90, {sum(x < 0.5 for x in shares)} below 0.50" if shares else "",
    ]
    if causes:
        lines.append("- freeze reasons (number of models):")
        lines += [f"  - {n}: {k}" for k, n in causes.most_common()]
    return lines


def section(results: list[cov.Result], family_of: dict[str, str], command: str,
            total_s: float, engine: str) -> str:  # fmt: skip
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        cov.TIMM_BEGIN,
        "## timm families",
        "",
        "One small model per timm family, `timm.create_model(name, pretrained=False)` (1000 "
        "classes), seed 0, batch 2, the protocol above; *removable*: `1 - hard_cost('params')` "
        "with every mask at 0 (one unit kept per group) / at init; *searchable params*: "
        "parameters of the Conv/Linear layers with searchable output channels / of all. "
        "Produced by `benchmarks/timm_coverage.py`.",
        "",
        f"- command: `{command}`",
        f"- date: {now}; total {total_s / 60:.1f} min",
        f"- torch {torch.__version__}, timm {timm.__version__}, Python "
        f"{platform.python_version()}, {platform.machine()} CPU, torch.set_num_threads(1)",
        f"- engine: lightning_dnas at `{engine}` (when the run started)",
        "",
        *summary(results),
        "",
        HISTORY,
        "",
        *table(results, family_of),
    ]
    return "\n".join(lines) + "\n"


def write_section(path: Path, text: str) -> None:
    """Replace the timm section of ``path`` (its last one) by ``text``, or append it."""
    old = path.read_text() if path.exists() else ""
    head = old[: old.index(cov.TIMM_BEGIN)] if cov.TIMM_BEGIN in old else old
    path.write_text(head.rstrip() + "\n\n" + text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", help="comma-separated timm model names")
    parser.add_argument("--output", help="Markdown report whose timm section is replaced")
    parser.add_argument("--json", help="also dump the raw results as JSON to this file")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    family_of = {model: fam for fam, model in FAMILIES.items()}
    names = ([n.strip() for n in args.models.split(",") if n.strip()] if args.models
             else list(FAMILIES.values()))  # fmt: skip
    engine = cov.engine_version()
    start = time.perf_counter()
    results = []
    for i, name in enumerate(names, 1):
        t0 = time.perf_counter()
        res = cov.run_model(name, make=(build, input_size))
        results.append(res)
        status = f"FAIL at {res.stage}: {res.error}" if res.error else "ok"
        print(f"[{i}/{len(names)}] {name}: {status}; searchable={res.searchable_layers}/"
              f"{res.layers} warnings={len(res.warnings)} removable={cov.fmt(res.removable)} "
              f"({time.perf_counter() - t0:.1f}s)", flush=True)  # fmt: skip
        if res.warnings:
            print(f"    frozen: {cov.reasons(res)}", flush=True)
        gc.collect()
    total = time.perf_counter() - start
    command = "python benchmarks/timm_coverage.py " + " ".join(
        sys.argv[1:] if argv is None else argv)
    text = section(results, family_of, command.strip(), total, engine)
    print("\n" + text)
    if args.output:
        write_section(Path(args.output), text)
        print(f"wrote {args.output}")
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in results], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
