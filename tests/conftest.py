"""Suite-wide settings: one torch thread per xdist worker (two workers on two cores would
otherwise oversubscribe the CPU and run many times slower)."""

import os

import pytest
import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


@pytest.fixture
def wandb_offline(tmp_path, monkeypatch):
    """Offline, silent W&B whose config, cache and artifact staging stay in ``tmp_path``
    (nothing written to the home directory); returns ``tmp_path``."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for var, sub in (("WANDB_CONFIG_DIR", "wandb-config"), ("WANDB_CACHE_DIR", "wandb-cache"),
                     ("WANDB_DATA_DIR", "wandb-data")):  # fmt: skip
        monkeypatch.setenv(var, str(tmp_path / sub))
    return tmp_path
