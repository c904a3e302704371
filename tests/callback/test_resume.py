"""Resuming from an end-of-epoch checkpoint of any stage continues exactly, and
``restore`` loads any such checkpoint without the callback."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from lightning_dnas import restore
from lightning_dnas.callback import DNASCallback
from lightning_dnas.nas.engine import DNAS
from lightning_dnas.stages import cascade_stages

from .modules import Classifier, TinySuperNet, fit_with_epoch_checkpoints, loaders

# Epochs: 0 warmup (SuperNet), 1-2 SuperNet search, 3 fine-tune, 4-5 PIT search, 6 fine-tune.
STAGES = cascade_stages(warmup=1, supernet=2, intermediate_finetune=1, pit=2, finetune=1,
                        supernet_strength=3e-3, pit_strength=3e-2)


def _fit(tmp_path, ckpt_path=None):
    L.seed_everything(7, workers=True)
    module = Classifier(TinySuperNet(channels=8))
    dnas = DNASCallback(stages=STAGES, softmax="hard_gumbel", icv=1e-3, arch_lr=0.05,
                        export_dir=False)
    fit_with_epoch_checkpoints(module, dnas, tmp_path, 7, ckpt_path)
    return module, dnas


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    path = tmp_path_factory.mktemp("full")
    module, dnas = _fit(path)
    return path, {k: v.clone() for k, v in module.net.state_dict().items()}, dnas.history


@pytest.mark.parametrize("epoch", [0, 1, 2, 3, 4, 5])
def test_resume_from_any_stage_equals_uninterrupted(uninterrupted, tmp_path, epoch):
    path, want, history = uninterrupted
    module, dnas = _fit(tmp_path, ckpt_path=path / f"epoch={epoch}.ckpt")
    assert [h["arch"] for h in dnas.history] == [h["arch"] for h in history]
    have = module.net.state_dict()
    assert set(have) == set(want)
    for key, value in want.items():
        assert torch.equal(have[key], value), key


def test_the_search_changed_the_network(uninterrupted):
    """The resume test is only meaningful if the searches did something."""
    _, _, history = uninterrupted
    assert len(history) == 2
    assert history[0]["arch"]["choices"]
    assert history[1]["arch"]["modules"], "PIT pruned nothing: raise the test's pit_strength"


@pytest.mark.parametrize("epoch", [0, 2, 3, 5, 6])
def test_restore_loads_any_checkpoint_without_the_callback(uninterrupted, epoch):
    path, want, _ = uninterrupted
    ckpt = path / f"epoch={epoch}.ckpt"
    module = restore(Classifier(TinySuperNet(channels=8)), ckpt)
    state = torch.load(ckpt, weights_only=False)["state_dict"]
    net_state = {k[len("net."):]: v for k, v in state.items() if k.startswith("net.")}
    assert set(module.net.state_dict()) == set(net_state)
    for key, value in net_state.items():
        assert torch.equal(module.net.state_dict()[key], value), key
    in_search = epoch in (0, 1, 2, 4, 5)
    assert isinstance(module.net, DNAS) == in_search
    if epoch == 6:
        for key, value in want.items():
            assert torch.equal(module.net.state_dict()[key], value), key
    net = restore(TinySuperNet(channels=8), ckpt)
    x = torch.randn(4, 1, 16)
    module.eval(), net.eval()
    with torch.no_grad():
        assert torch.equal(module.net(x), net(x))


@pytest.mark.parametrize("epoch", [2, 5, 6])
def test_trainer_test_loads_any_checkpoint_with_the_callback_attached(uninterrupted, epoch):
    """``Trainer.test(ckpt_path=...)`` in a fresh process-like setting (new module, new
    callback, no fit): the callback attaches the structure hooks in ``setup("test")``, the
    checkpoint rebuilds its structure (search wrapper or exported network) and loads."""
    path, _, _ = uninterrupted
    ckpt = path / f"epoch={epoch}.ckpt"
    module = Classifier(TinySuperNet(channels=8))
    dnas = DNASCallback(stages=STAGES, export_dir=False)
    trainer = L.Trainer(callbacks=[dnas], logger=False, enable_progress_bar=False,
                        enable_model_summary=False)
    _, val = loaders(batch_size=16, n=96)
    trainer.validate(module, val, ckpt_path=ckpt, verbose=False)
    state = torch.load(ckpt, weights_only=False)["state_dict"]
    for key, value in module.state_dict().items():
        if key.startswith("net."):
            assert torch.equal(value, state[key]), key
    assert isinstance(module.net, DNAS) == (epoch in (2, 5))
