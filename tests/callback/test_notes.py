"""The callback says when a search did nothing: a network with nothing to search warns at
setup, an export that removed nothing warns with the likely cause and knob, and every
export prints what it removed (checked against the seed and the exported network)."""

from __future__ import annotations

import logging
import warnings

import lightning as L
import pytest
import torch
from torch import nn

from lightning_dnas import DNASCallback, Stage

from .modules import Classifier, TinyTCN, loaders


def _fit(net: nn.Module, caplog: pytest.LogCaptureFixture | None = None,
         **kwargs) -> tuple[DNASCallback, list[str]]:  # fmt: skip
    L.seed_everything(0)
    train, val = loaders()
    dnas = DNASCallback(export_dir=False, **kwargs)
    trainer = L.Trainer(callbacks=[dnas], logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0)  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(Classifier(net), train, val)
    return dnas, [str(w.message) for w in caught if "DNASCallback" in str(w.message)]


def test_a_bare_linear_network_warns_at_setup_that_nothing_can_be_searched():
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    dnas, warned = _fit(net, stages=[Stage("search", 1, "pit")])
    assert any("`net` has nothing pit can search" in w for w in warned), warned
    # ... and it is not told again as "removed nothing" at the export.
    assert not any("removed nothing" in w for w in warned)
    assert dnas.history[0]["removed"]["searchable_channel_masks"] == 0


def test_too_few_architecture_steps_for_arch_lr_is_named():
    # 2 epochs x 6 batches = 12 Adam steps at 1e-3: a mask moves about 0.012 of its 0.5.
    _, warned = _fit(TinyTCN(), stages=[Stage("search", 2, "pit")], arch_lr=1e-3,
                        strength=1.0)  # fmt: skip
    (message,) = [w for w in warned if "removed nothing" in w]
    assert "took 12 architecture steps at arch_lr=0.001" in message
    assert "about 500 steps" in message and "raise arch_lr" in message


def test_enough_steps_without_pressure_names_the_strength():
    # 60 steps at 0.05 move a mask 6 times the distance, but a negative lambda pulls every
    # mask up (lambda 0 is not enough: the task loss alone removes channels of TinyTCN).
    _, warned = _fit(TinyTCN(), stages=[Stage("search", 10, "pit")], arch_lr=0.05,
                        strength=-1.0)  # fmt: skip
    (message,) = [w for w in warned if "removed nothing" in w]
    assert "raise strength" in message and "arch_lr" not in message


def _widths(net: nn.Module) -> tuple[int, int]:
    """Output channels and kernel taps (first dim) summed over Conv/Linear layers."""
    channels = taps = 0
    for m in net.modules():
        if isinstance(m, nn.Conv1d):
            channels, taps = channels + m.out_channels, taps + m.kernel_size[0]
        elif isinstance(m, nn.Linear):
            channels, taps = channels + m.out_features, taps + 1
    return channels, taps


def test_the_export_summary_counts_what_was_removed(caplog):
    caplog.set_level(logging.INFO)
    seed = TinyTCN(channels=8, kernel=5)
    dnas, warned = _fit(TinyTCN(channels=8, kernel=5), stages=[Stage("search", 6, "pit")],
                        arch_lr=0.1, strength=0.05)  # fmt: skip
    removed = dnas.history[0]["removed"]
    (seed_channels, seed_taps), (channels, taps) = _widths(seed), _widths(dnas.exported)
    assert removed["channels"] == seed_channels - channels > 0
    assert removed["taps"] == seed_taps - taps
    line = [r.getMessage() for r in caplog.records if "exported after" in r.getMessage()]
    assert f"removed {removed['channels']} channels, {removed['taps']} kernel taps" in line[0]
    assert not any("removed nothing" in w for w in warned)
    x = torch.randn(2, 1, 16)
    assert dnas.exported(x).shape == (2, 3)
