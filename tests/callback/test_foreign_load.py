"""A DNAS checkpoint loaded without the callback: the loaders that cannot rebuild the
structure (``load_from_checkpoint``, a Trainer without the callback) fail with an error
that names ``lightning_dnas.restore``; ``restore`` loads it, also from the former key."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch

from lightning_dnas import DNASCallback, restore

from .modules import Classifier, TinyTCN, loaders

ADVICE = "this is a lightning_dnas checkpoint: use lightning_dnas.restore(module, path)"


class Saved(Classifier):
    """The test classifier with its hyperparameters saved, as ``load_from_checkpoint``
    needs to build it (``net`` is an argument: a fresh seed)."""

    def __init__(self, net: torch.nn.Module | None = None) -> None:
        super().__init__(net if net is not None else TinyTCN())
        self.save_hyperparameters(ignore=["net"])


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint taken after the export (the exported, narrower network)."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("ckpt")
    train, val = loaders()
    dnas = DNASCallback(search_epochs=1, finetune_epochs=1, strength=1e-2, arch_lr=0.2,
                        export_dir=False)  # fmt: skip
    trainer = L.Trainer(callbacks=[dnas], default_root_dir=root, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0)  # fmt: skip
    trainer.fit(Saved(), train, val)
    path = root / "fit.ckpt"
    trainer.save_checkpoint(path)
    return path


def test_load_from_checkpoint_names_restore(ckpt: Path):
    with pytest.raises(RuntimeError, match=r"Unexpected key\(s\) in state_dict") as err:
        Saved.load_from_checkpoint(ckpt)
    assert ADVICE in str(err.value)


def test_a_trainer_without_the_callback_names_restore(ckpt: Path):
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    with pytest.raises(RuntimeError) as err:
        trainer.validate(Saved(), loaders()[1], ckpt_path=ckpt, verbose=False)
    assert ADVICE in str(err.value)


@pytest.mark.parametrize("key", ["new", "legacy"])
def test_restore_loads_it(ckpt: Path, tmp_path: Path, key: str):
    data = torch.load(ckpt, weights_only=False)
    state = data["state_dict"]
    if key == "legacy":  # the name the entry had before it carried the advice
        state["_lightning_dnas"] = state.pop(next(k for k in state if ADVICE in k))
        ckpt = tmp_path / "legacy.ckpt"
        torch.save(data, ckpt)
    module = restore(Saved(), ckpt)
    net_state = {k[len("net."):]: v for k, v in state.items() if k.startswith("net.")}
    assert module.net.state_dict().keys() == net_state.keys()
    assert all(torch.equal(module.net.state_dict()[k], v) for k, v in net_state.items())
