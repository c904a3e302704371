"""Budgets at the callback's edges: an infeasible budget fails in ``setup`` also when a
warmup comes first; a resumed search does not warn that "the seed" meets the budget when
only the resumed state does; a cascade's SuperNet search gets no budget controller."""

import warnings

import lightning as L
import pytest
import torch
from lightning.pytorch import Callback
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from lightning_dnas import DNASCallback, cascade_stages
from tests.callback.modules import Classifier, TinySuperNet, TinyTCN, loaders


class Started(Callback):
    """Records whether the fit got past ``setup`` (``on_fit_start`` ran)."""

    def __init__(self) -> None:
        self.started = False

    def on_fit_start(self, trainer, pl_module) -> None:
        self.started = True


def _trainer(tmp_path, callbacks, **kwargs) -> L.Trainer:
    return L.Trainer(callbacks=callbacks, logger=False, enable_progress_bar=False,
                     enable_model_summary=False, num_sanity_val_steps=0, deterministic=True,
                     default_root_dir=tmp_path, **kwargs)  # fmt: skip


@pytest.mark.parametrize("warmup", [0, 2])
def test_infeasible_budget_fails_in_setup_with_or_without_warmup(tmp_path, warmup):
    dnas = DNASCallback("pit", budget={"params": 5}, warmup_epochs=warmup, search_epochs=1,
                        finetune_epochs=0, export_dir=False)  # fmt: skip
    started = Started()
    with pytest.raises(MisconfigurationException, match=r"budget params=5 is infeasible"):
        _trainer(tmp_path, [dnas, started]).fit(Classifier(TinyTCN()), *loaders())
    assert not started.started


def _fit(tmp_path, ckpt_path=None):
    torch.manual_seed(0)
    # arch_lr 0.1: the masks cross the threshold within the search, so that a late search
    # epoch's state meets the budget (the case the false warning came from)
    dnas = DNASCallback("pit", budget={"params": 80}, warmup_epochs=1, search_epochs=4,
                        finetune_epochs=0, export_dir=False, arch_lr=0.1)  # fmt: skip
    saver = ModelCheckpoint(dirpath=tmp_path, every_n_epochs=1, save_top_k=-1,
                            filename="{epoch}")  # fmt: skip
    module = Classifier(TinyTCN())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _trainer(tmp_path, [dnas, saver]).fit(module, *loaders(), ckpt_path=ckpt_path)
    return dnas, [str(w.message) for w in caught]


def test_resume_does_not_warn_about_the_resumed_state(tmp_path):
    dnas, warned = _fit(tmp_path)
    assert not any("seed already meets" in w for w in warned)
    # a late search epoch's checkpoint: the state there already meets the budget
    ckpt = tmp_path / "epoch=3.ckpt"
    state = torch.load(ckpt, weights_only=False)["callbacks"]
    budget = next(v["budget"] for k, v in state.items() if "DNASCallback" in k)
    assert budget["last"]["params"] <= 80  # else the check below could not fail
    again, warned = _fit(tmp_path / "resumed", ckpt_path=ckpt)
    assert not any("seed already meets" in w for w in warned), warned
    assert again.history[-1]["arch"] == dnas.history[-1]["arch"]


def test_cascade_supernet_search_runs_without_the_budget(tmp_path):
    stages = cascade_stages(supernet=1, pit=1, finetune=0, warmup=1, intermediate_finetune=0,
                            supernet_strength=0.0)  # fmt: skip
    dnas = DNASCallback(stages=stages, budget={"params": 60}, export_dir=False)
    seen = []

    class Spy(Callback):  # after the DNASCallback: sees each epoch's stage once entered
        def on_train_epoch_start(self, trainer, pl_module) -> None:
            seen.append((dnas.stage.method, dnas.stage.kind, dnas._arch.budget is not None))

    _trainer(tmp_path, [dnas, Spy()]).fit(Classifier(TinySuperNet()), *loaders())
    assert seen == [("supernet", "warmup", False), ("supernet", "search", False),
                    ("pit", "search", True)]  # fmt: skip
