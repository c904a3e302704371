"""A fit that stops before its stage list ends still leaves the user a network, and says so:
``max_steps``, ``max_time``, Ctrl+C, another callback's ``should_stop``; EarlyStopping in
a last search stage; ``fast_dev_run`` running every stage; evaluation of any stage's
checkpoint with a fresh callback of another configuration."""

from __future__ import annotations

import copy
import signal
import warnings

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint

from lightning_dnas import DNASCallback, Stage
from lightning_dnas.nas.engine import DNAS
from lightning_dnas.stages import cascade_stages

from .modules import Classifier, TinySuperNet, TinyTCN, loaders

# 96 samples in batches of 16: 6 training batches (optimizer steps) per epoch.
STAGES = [Stage("search", 4, "pit"), Stage("finetune", 2)]


def _trainer(*callbacks, **kwargs):
    return L.Trainer(callbacks=list(callbacks), logger=False,
                     enable_checkpointing=kwargs.pop("enable_checkpointing", False),
                     enable_progress_bar=False, enable_model_summary=False,
                     num_sanity_val_steps=0, **kwargs)  # fmt: skip


class SearchAt(Callback):
    """Keeps a copy of the search network at the end of each epoch's validation (the state
    the callback snapshots as that epoch's best candidate)."""

    def __init__(self) -> None:
        self.copies: dict[int, DNAS] = {}

    def on_validation_end(self, trainer, pl_module):
        if isinstance(pl_module.net, DNAS) and not trainer.sanity_checking:
            self.copies[trainer.current_epoch] = copy.deepcopy(pl_module.net)


def _same_function(a: torch.nn.Module, b: torch.nn.Module) -> None:
    x = torch.randn(5, 1, 16)
    a.eval(), b.eval()
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x))


def _early_end_warnings(record) -> list[str]:
    return [str(w.message) for w in record if "the fit stopped at epoch" in str(w.message)]


def test_max_steps_inside_the_search_exports_the_best_state_so_far():
    L.seed_everything(0)
    train, val = loaders()
    model, seen = Classifier(TinyTCN()), SearchAt()
    dnas = DNASCallback(stages=STAGES, strength=1e-2, arch_lr=0.05, export_dir=False)
    # Validation scores epoch 0 (lower val_loss + lambda * cost wins, a single candidate);
    # step 9 is in epoch 1, which never reaches its validation.
    with pytest.warns(UserWarning) as record:
        _trainer(dnas, seen, max_steps=9).fit(model, train, val)
    (message,) = _early_end_warnings(record)
    assert "Trainer(max_steps=9)" in message and "best validated epoch 0" in message
    assert "not run: 1-finetune" in message and "ckpt_path=" in message
    assert not isinstance(model.net, DNAS) and dnas.exported is model.net
    assert [h["best_epoch"] for h in dnas.history] == [0]
    _same_function(dnas.exported, seen.copies[0].export())


def test_max_time_stops_the_fit_not_each_stage():
    L.seed_everything(0)
    train, val = loaders()
    model = Classifier(TinyTCN())
    dnas = DNASCallback(stages=[Stage("search", 500, "pit"), Stage("finetune", 500)],
                        export_dir=False)  # fmt: skip
    with pytest.warns(UserWarning) as record:
        _trainer(dnas, max_time={"seconds": 2}).fit(model, train, val)
    (message,) = _early_end_warnings(record)
    assert "max_time" in message and "stage 0-search-pit" in message
    # The Timer's stop ended the fit inside the search: no fine-tune epoch ran after it.
    assert len(dnas.history) == 1 and dnas.stage.kind == "search"
    assert dnas.exported is model.net and not isinstance(model.net, DNAS)


class Interrupt(Callback):
    """Raises KeyboardInterrupt (what Ctrl+C raises) at the first batch of ``epoch``."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.current_epoch == self.epoch:
            raise KeyboardInterrupt


def test_ctrl_c_inside_the_search_exports_the_best_state_so_far():
    L.seed_everything(0)
    train, val = loaders()
    model, seen = Classifier(TinyTCN()), SearchAt()
    dnas = DNASCallback(stages=STAGES, export_dir=False)
    handler = signal.getsignal(signal.SIGINT)
    try:
        with pytest.warns(UserWarning) as record, pytest.raises(SystemExit):
            _trainer(dnas, seen, Interrupt(epoch=2)).fit(model, train, val)
    finally:  # Lightning ignores SIGINT from its graceful shutdown on
        signal.signal(signal.SIGINT, handler)
    (message,) = _early_end_warnings(record)
    assert "KeyboardInterrupt" in message
    best = dnas.history[0]["best_epoch"]
    assert best in (0, 1) and f"best validated epoch {best}" in message
    assert not isinstance(model.net, DNAS) and dnas.exported is model.net
    _same_function(dnas.exported, seen.copies[best].export())


class StopAt(Callback):
    """Sets ``trainer.should_stop`` in ``epoch`` (what a user's own callback does)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.current_epoch == self.epoch:
            trainer.should_stop = True


def test_another_callbacks_stop_ends_the_fit_with_the_search_exported():
    train, val = loaders()
    model = Classifier(TinyTCN())
    dnas = DNASCallback(stages=STAGES, export_dir=False)
    trainer = _trainer(dnas, StopAt(epoch=1))
    with pytest.warns(UserWarning) as record:
        trainer.fit(model, train, val)
    (message,) = _early_end_warnings(record)
    assert "trainer.should_stop" in message
    assert trainer.current_epoch == 2, "stopped after epoch 1, not at the end of each stage"
    assert dnas.stage.kind == "search" and len(dnas.history) == 1
    assert dnas.exported is model.net and not isinstance(model.net, DNAS)


def test_early_stopping_in_a_last_search_stage_exports_without_warning():
    train, val = loaders()
    model = Classifier(TinyTCN())
    dnas = DNASCallback(stages=[Stage("search", 10, "pit")], export_dir=False)
    # min_delta far above any improvement: epoch 0 sets the best, epoch 1 runs out.
    stop = EarlyStopping(monitor="val_loss", patience=1, min_delta=100.0)
    trainer = _trainer(dnas, stop)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        trainer.fit(model, train, val)
    assert trainer.current_epoch == 2
    assert not _early_end_warnings(record)
    assert [h["stage"] for h in dnas.history] == ["0-search-pit"]
    assert dnas.exported is model.net and not isinstance(model.net, DNAS)


def test_fast_dev_run_runs_every_stage_for_one_batch():
    train, val = loaders()
    model = Classifier(TinySuperNet())
    dnas = DNASCallback(stages=cascade_stages(supernet=5, pit=5, finetune=5,
                                              intermediate_finetune=5))  # fmt: skip
    trainer = _trainer(dnas, fast_dev_run=True)
    trainer.fit(model, train, val)
    assert trainer.current_epoch == len(dnas.stages) == 4
    assert trainer.global_step == 4, "one training batch per stage"
    assert [h["method"] for h in dnas.history] == ["supernet", "pit"]
    assert dnas.exported is model.net and not isinstance(model.net, DNAS)


@pytest.fixture(scope="module")
def cascade_checkpoints(tmp_path_factory):
    """A SuperNet -> PIT cascade, one epoch per stage, a checkpoint after each epoch:
    epochs 0 SuperNet search, 1 fine-tune, 2 PIT search, 3 fine-tune."""
    path = tmp_path_factory.mktemp("cascade")
    L.seed_everything(3)
    train, val = loaders()
    dnas = DNASCallback(stages=cascade_stages(supernet=1, pit=1, finetune=1,
                                              intermediate_finetune=1), export_dir=False)
    every = ModelCheckpoint(dirpath=path, filename="{epoch}", save_top_k=-1, every_n_epochs=1)
    _trainer(dnas, every, enable_checkpointing=True).fit(Classifier(TinySuperNet()), train, val)
    return path


@pytest.mark.parametrize("epoch", [0, 1, 2, 3])
@pytest.mark.parametrize("run", ["validate", "test", "predict"])
def test_a_fresh_callback_of_another_configuration_evaluates_any_checkpoint(
        cascade_checkpoints, epoch, run):  # fmt: skip
    ckpt = cascade_checkpoints / f"epoch={epoch}.ckpt"
    _, val = loaders()
    module = Classifier(TinySuperNet())
    module.test_step = module.validation_step
    module.predict_step = lambda batch, batch_idx: module(batch[0])
    dnas = DNASCallback("pit", cost="macs")  # one search stage, another cost
    getattr(_trainer(dnas), run)(module, val, ckpt_path=ckpt,
                                 **({} if run == "predict" else {"verbose": False}))
    state = torch.load(ckpt, weights_only=False)["state_dict"]
    for key, value in module.state_dict().items():
        if key.startswith("net."):
            assert torch.equal(value, state[key]), key
    assert isinstance(module.net, DNAS) == (epoch in (0, 2))
    assert dnas.history == [] and dnas._clock.index == 0, "inert outside a fit"
