"""DDP: every rank searches and exports the same architecture and ends with the same
weights (a cascade, so the network is swapped and DDP re-wrapped twice; with
``quantize="int8"`` a third time, into the quantisation-aware network)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).with_name("ddp_fit.py")


@pytest.mark.parametrize("quantize", [None, "int8"])
def test_ddp_ranks_agree_after_every_export(tmp_path, quantize):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    args = [sys.executable, str(SCRIPT), str(tmp_path), *([quantize] if quantize else [])]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=False)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=False)
    assert rank0["epochs"] == rank1["epochs"] == 6
    assert len(rank0["history"]) == 2
    assert [h["arch"] for h in rank0["history"]] == [h["arch"] for h in rank1["history"]]
    assert set(rank0["state"]) == set(rank1["state"])
    for key, value in rank0["state"].items():
        assert torch.equal(value, rank1["state"][key]), key
    if quantize:  # the fine-tune ran on the QAT network: its observers' ranges agree too
        assert any("activation_post_process" in key for key in rank0["state"])


def test_ddp_several_networks_with_int8_ranks_agree(tmp_path):
    """``network=["backbone", "head"]`` under DDP: the masks live in the LightningModule
    (``_dnas_masks``), both parts are exported with their shared channels, then each is
    prepared for QAT on its own; both ranks end with the same architecture, weights and
    observer ranges."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    args = [sys.executable, str(SCRIPT), str(tmp_path), "int8", "several"]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=False)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=False)
    assert rank0["epochs"] == rank1["epochs"] == 3
    [export] = rank0["history"]
    assert [h["arch"] for h in rank1["history"]] == [export["arch"]]
    kept = export["arch"]["modules"]["backbone.c2"]["out"]
    assert kept is not None and len(kept) < 8, "the search removed none of the shared channels"
    assert export["arch"]["modules"]["head"]["in"] == kept
    assert set(rank0["state"]) == set(rank1["state"])
    for key, value in rank0["state"].items():
        assert torch.equal(value, rank1["state"][key]), key
    for part in ("backbone", "head"):  # each part's QAT graph, with its own observers
        assert any(k.startswith(f"{part}.graph.") and "activation_post_process" in k
                   for k in rank0["state"]), part
