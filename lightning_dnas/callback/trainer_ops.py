"""Every place where the callback reaches past Lightning's callback API.

A callback is meant to observe the fit; changing the network mid-fit needs more: a fresh
optimizer and DDP wrapper for the new parameters, loaders before the fit loop has set
them up, other callbacks' records reset, the fit's length adjusted. Each of those touches
is here, one function each, with why it is needed and the Lightning source it was read
from (**Lightning 2.6.6**, ``lightning.pytorch``), so that a Lightning upgrade is checked
in one file. Attributes with a leading underscore are Lightning internals; the others are
public but owned by Lightning or by another callback.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from torch.nn.parallel import DistributedDataParallel

# -- reading the trainer ------------------------------------------------------------------


def first_train_batch(trainer: Trainer) -> Any:
    """The first batch of the training loader, before the fit loop has built its loaders.

    Why: ``setup`` (where the network is converted, before ``configure_optimizers``) runs
    before ``trainer.train_dataloader`` exists. Read from: ``loops/fit_loop.py``
    (``FitLoop._data_source``, a ``_DataLoaderSource`` whose ``dataloader()`` calls the
    datamodule's or module's ``train_dataloader()``).
    """
    loader = trainer.fit_loop._data_source.dataloader()
    return next(iter(loader))


class ValBatches:
    """An endless iterator over the validation loader (alternating search), on the
    module's device.

    Why: an alternating architecture step needs a validation batch in the middle of a
    training epoch, where ``trainer.val_dataloaders`` may not be set up yet. Read from:
    ``loops/evaluation_loop.py`` (``_EvaluationLoop._data_source``, a
    ``_DataLoaderSource``) and ``strategies/strategy.py`` (``Strategy.batch_to_device``).
    """

    def __init__(self) -> None:
        self._iter: Any = None

    def next(self, trainer: Trainer, pl_module: LightningModule) -> Any:
        """The next validation batch, starting the loader over when it is exhausted."""
        if self._iter is None:
            self._iter = iter(trainer.fit_loop.epoch_loop.val_loop._data_source.dataloader())
        try:
            batch = next(self._iter)
        except StopIteration:
            self._iter = None
            return self.next(trainer, pl_module)
        return trainer.strategy.batch_to_device(batch, pl_module.device)


def grad_scaler(trainer: Trainer) -> Any:
    """The fp16 ``GradScaler`` of the fit, ``None`` without one.

    Why: the regulariser must be scaled like the loss and the architecture step must go
    through the same scaler. Read from: ``plugins/precision/amp.py`` (``MixedPrecision``
    holds it as ``.scaler``, ``None`` for bf16; other precision plugins have none).
    """
    return getattr(trainer.precision_plugin, "scaler", None)


def batch_position(trainer: Trainer) -> tuple[int, int]:
    """``(epoch, batch index)`` of the running training batch.

    Why: with manual optimization ``on_before_backward`` may run several times per batch
    and the regulariser enters once. Read from: ``loops/training_epoch_loop.py``
    (``_TrainingEpochLoop.batch_idx``, public on an internal loop).
    """
    return trainer.current_epoch, trainer.fit_loop.epoch_loop.batch_idx


def find_example(example_input: Any, trainer: Trainer, pl_module: LightningModule) -> Any:
    """The example input: ``example_input=``, else ``example_input_array``, else the first
    training batch's first element (at most 8 samples)."""
    from .config import example_from_batch  # config imports the callback's parts

    if example_input is not None:
        return example_input
    if pl_module.example_input_array is not None:
        return pl_module.example_input_array
    return example_from_batch(first_train_batch(trainer))


def stage_steps(trainer: Trainer, stage: Any) -> int:
    """Optimizer steps of ``stage``: ``epochs * batches per epoch / accumulate_grad_batches``
    (``trainer.num_training_batches``, set once the training dataloader is loaded)."""
    batches = trainer.num_training_batches
    per_epoch = 1 if not math.isfinite(batches) else max(int(batches), 1)
    return stage.epochs * per_epoch // max(trainer.accumulate_grad_batches, 1)


def has_no_val_batches(trainer: Trainer) -> bool:
    """Whether the fit has no validation batches (an alternating search cannot run).

    Read from: ``trainer/trainer.py`` (``num_val_batches`` is ``[]`` before the loaders
    are set up; ``limit_val_batches`` as the user gave it).
    """
    return trainer.num_val_batches == [] and not trainer.limit_val_batches


# -- changing the trainer -----------------------------------------------------------------


def set_max_epochs(trainer: Trainer, epochs: int) -> None:
    """End the fit after ``epochs`` epochs.

    Why: the stages fix the fit's length; an unset (default 1000) or larger
    ``max_epochs`` would run past the last stage. Read from: ``loops/fit_loop.py``
    (``FitLoop.max_epochs``, what ``Trainer(max_epochs=)`` sets).
    """
    trainer.fit_loop.max_epochs = epochs


def move_after_early_stopping(trainer: Trainer, callback: Callback) -> None:
    """Move ``callback`` after every EarlyStopping of the trainer.

    Why: so that its ``on_train_epoch_end`` sees their stop decision and turns it into the
    end of a stage that is not the last. ModelCheckpoints stay last, as Lightning orders
    them. Read from: ``trainer/connectors/callback_connector.py``
    (``_reorder_callbacks``: tuner callbacks first, checkpoints last, others in the
    user's order; hooks run in list order).
    """
    callbacks = trainer.callbacks  # type: ignore[attr-defined]
    stoppers = [i for i, cb in enumerate(callbacks) if isinstance(cb, EarlyStopping)]
    if stoppers and callbacks.index(callback) < stoppers[-1]:
        callbacks.remove(callback)
        callbacks.insert(stoppers[-1], callback)


def reset_monitors(trainer: Trainer) -> None:
    """Make every ModelCheckpoint and EarlyStopping forget its best score.

    Why: a new network starts new bests; the previous network's records would otherwise
    win against the fine-tune (files already written stay on disk). Read from:
    ``callbacks/model_checkpoint.py`` (``__init__`` and ``__init_monitor_mode``:
    ``best_k_models``, ``kth_best_model_path``, ``best_model_score``, ``best_model_path``,
    ``kth_value``) and ``callbacks/early_stopping.py`` (``__init__``: ``wait_count``,
    ``stopped_epoch``, ``best_score``), set here to their initial values.
    """
    for cb in trainer.callbacks:  # type: ignore[attr-defined]
        if isinstance(cb, ModelCheckpoint):
            cb.best_k_models, cb.kth_best_model_path = {}, ""
            cb.best_model_score, cb.best_model_path = None, ""
            cb.kth_value = torch.tensor(math.inf if cb.mode == "min" else -math.inf)
        elif isinstance(cb, EarlyStopping):
            cb.wait_count, cb.stopped_epoch = 0, 0
            cb.best_score = torch.tensor(math.inf if cb.mode == "min" else -math.inf)


def reset_optimizers(trainer: Trainer) -> None:
    """Fresh optimizers and schedulers from the module's ``configure_optimizers``, and the
    DDP wrapper rebuilt around the module.

    Why: after an export or a conversion the module holds new parameters; the old
    optimizers hold the old ones and DDP's reducer was built for them. Read from:
    ``strategies/ddp.py`` (``DDPStrategy._setup_model`` wraps a module in
    ``DistributedDataParallel``, as ``setup`` does) and ``strategies/strategy.py``
    (``Strategy.setup_optimizers`` calls ``configure_optimizers`` and sets
    ``trainer.strategy.optimizers`` / ``lr_scheduler_configs``).
    """
    strategy = trainer.strategy
    if isinstance(strategy.model, DistributedDataParallel):
        strategy.model = strategy._setup_model(strategy.model.module)  # type: ignore[attr-defined]
    strategy.setup_optimizers(trainer)


def strip_from_optimizers(trainer: Trainer, param_ids: set[int]) -> None:
    """Take the parameters whose ``id`` is in ``param_ids`` out of the user's optimizers.

    Why: the architecture parameters have their own optimizer and must never get the
    user's weight decay or learning-rate schedule, whatever ``configure_optimizers``
    returned. Read from: ``trainer/trainer.py`` (``Trainer.optimizers``: the strategy's
    optimizers, whose ``param_groups`` are edited in place).
    """
    if not param_ids:
        return
    for opt in trainer.optimizers:
        for group in opt.param_groups:
            group["params"] = [p for p in group["params"] if id(p) not in param_ids]


@contextmanager
def silenced_log(pl_module: LightningModule) -> Iterator[None]:
    """Run the block with ``pl_module.log`` doing nothing.

    Why: an alternating step calls the user's ``training_step`` on a validation batch; its
    ``self.log`` calls would record training metrics computed on validation data. Read
    from: ``core/module.py``
    (``LightningModule.log``, an instance attribute lookup, so an instance attribute
    shadows it).
    """
    log = pl_module.log
    pl_module.log = lambda *a, **k: None  # type: ignore[method-assign]
    try:
        yield
    finally:
        pl_module.log = log  # type: ignore[method-assign]


# -- the checkpoint -----------------------------------------------------------------------


def get_rng() -> dict[str, Any]:
    """The global torch / NumPy / Python RNG states, as types a ``weights_only`` load takes.

    Why: a resumed fit must draw the same random numbers as the uninterrupted one. Lightning
    loads ``ckpt_path`` with ``torch.load(weights_only=None)`` (``fabric/utilities/
    cloud_io.py``, ``_load``), which torch >= 2.6 treats as ``weights_only=True``: NumPy
    arrays are refused there, so NumPy's key array travels as a tensor.
    """
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    numpy_state = [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached]
    return {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate()}


def set_rng(state: Mapping[str, Any]) -> None:
    """Set the global RNG states from :func:`get_rng`."""
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(state["python"])
