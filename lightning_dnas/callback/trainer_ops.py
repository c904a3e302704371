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
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, Timer
from lightning.pytorch.callbacks.early_stopping import EarlyStoppingReason
from torch.nn.parallel import DistributedDataParallel

# Lightning's CombinedLoader (every fit's loader setup) flattens the loaders with its own
# copy of torch's tree_flatten (lightning/pytorch/utilities/_pytree.py), which builds a
# `LeafSpec()`: deprecated by torch 2.14 with a FutureWarning, printed again after each
# `warnings.catch_warnings()` (Lightning issue #21326). Nothing a user's code can change:
# that one message from that one module is silenced, any other warning still shows.
warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                        category=FutureWarning, module=r"lightning\.pytorch\.utilities\._pytree")

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


def find_example(example_input: Any, trainer: Trainer,
                 pl_module: LightningModule) -> tuple[Any, str]:  # fmt: skip
    """The example input and where it came from (for error messages): ``example_input=``,
    else ``example_input_array``, else the first training batch's first element (at most
    8 samples)."""
    from .config import example_from_batch  # config imports the callback's parts

    if example_input is not None:
        return example_input, "DNASCallback(example_input=)"
    if pl_module.example_input_array is not None:
        return pl_module.example_input_array, f"{type(pl_module).__name__}.example_input_array"
    return (example_from_batch(first_train_batch(trainer)),
            "the first element of the first training batch (at most 8 samples)")  # fmt: skip


def configure_model_early(trainer: Trainer, pl_module: LightningModule,
                          network: str | None) -> None:  # fmt: skip
    """Run the module's ``configure_model`` now, in the callback's ``setup``, when the
    network (the attribute ``network``; ``None``: any child with trainable parameters) is
    not built yet, and make Lightning's own call of it
    later in this run a no-op (undone by :func:`restore_configure_model`).

    Why: the callback converts the network in ``setup``, before ``configure_optimizers``,
    and Lightning calls ``configure_model`` only after every ``setup``. Running it earlier
    under the same contexts is what Lightning would do; shadowing it afterwards keeps a
    hook that is not idempotent from building a second network over the search network.
    Read from: ``trainer/trainer.py`` (``_run``: ``_call_setup_hook`` then
    ``_call_configure_model``) and ``trainer/call.py`` (``_call_configure_model``: the
    strategy's ``tensor_init_context``/``model_sharded_context`` and the precision
    plugin's ``module_init_context``, only when the hook is overridden).
    """
    from lightning.pytorch.trainer import call
    from lightning.pytorch.utilities.model_helpers import is_overridden

    from .config import has_network  # config imports the callback's parts

    if has_network(pl_module, network) or not is_overridden("configure_model", pl_module):
        return
    call._call_configure_model(trainer)
    pl_module.configure_model = lambda: None  # type: ignore[method-assign]


def restore_configure_model(pl_module: LightningModule) -> None:
    """Undo :func:`configure_model_early`'s shadowing (an instance attribute), so that a
    later run of the same module calls the user's hook again."""
    pl_module.__dict__.pop("configure_model", None)


def given_example(dnas: Any, pl_module: LightningModule) -> Any:
    """The example input known without a training batch (``validate``/``test`` before any
    fit): ``example_input=``, else ``example_input_array`` (``None`` when neither)."""
    if dnas.example_input is not None:
        return dnas.example_input
    return pl_module.example_input_array


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


def early_stopping_stopped(trainer: Trainer) -> bool:
    """Whether an EarlyStopping callback asked to stop in this epoch.

    Why: only EarlyStopping's stop ends a stage (it says "this stage has converged"); a
    stop requested by anything else (a Timer, a user callback) ends the fit. Read from:
    ``callbacks/early_stopping.py`` (``_run_early_stopping_check`` sets
    ``stopped_epoch = trainer.current_epoch`` and a ``stopping_reason`` other than
    ``NOT_STOPPED`` when it stops; :func:`reset_monitors` puts the reason back).
    """
    return any(isinstance(cb, EarlyStopping)
               and cb.stopping_reason != EarlyStoppingReason.NOT_STOPPED
               and cb.stopped_epoch == trainer.current_epoch
               for cb in trainer.callbacks)  # type: ignore[attr-defined]  # fmt: skip


def stop_reason(trainer: Trainer) -> str:
    """Why a fit loop ended before the stage list was done, in the user's words.

    Read from: ``loops/fit_loop.py`` (``FitLoop.done``: ``max_steps`` reached, or
    ``trainer.should_stop``), ``callbacks/timer.py`` (``Trainer(max_time=)`` is a
    ``Timer`` callback setting ``should_stop``; ``time_remaining()`` is public).
    """
    if trainer.max_steps != -1 and trainer.global_step >= trainer.max_steps:
        return f"Trainer(max_steps={trainer.max_steps})"
    for cb in trainer.callbacks:  # type: ignore[attr-defined]
        if isinstance(cb, Timer) and (cb.time_remaining() or 0.0) <= 0.0:
            return "Trainer(max_time=) / Timer running out"
    if trainer.should_stop:
        return "trainer.should_stop, set by a callback or the module (not EarlyStopping)"
    return "the fit loop ending early"


def compiled(pl_module: LightningModule) -> bool:
    """Whether the fit runs ``torch.compile(pl_module)``.

    Read from: ``utilities/compile.py`` (``from_compiled`` records the compile options in
    ``_compiler_ctx``, which ``LightningModule.__init__`` sets to ``None``); the Trainer
    calls it when ``fit`` is given an ``OptimizedModule``.
    """
    return getattr(pl_module, "_compiler_ctx", None) is not None


def fast_dev_run(trainer: Trainer) -> bool:
    """Whether the fit is a ``Trainer(fast_dev_run=)`` smoke test. Read from:
    ``trainer/setup.py`` (``_init_debugging_flags`` sets ``trainer.fast_dev_run``)."""
    return bool(trainer.fast_dev_run)


# -- changing the trainer -----------------------------------------------------------------


def set_max_epochs(trainer: Trainer, epochs: int) -> None:
    """End the fit after ``epochs`` epochs.

    Why: the stages fix the fit's length; an unset (default 1000) or larger
    ``max_epochs`` would run past the last stage. Read from: ``loops/fit_loop.py``
    (``FitLoop.max_epochs``, what ``Trainer(max_epochs=)`` sets).
    """
    trainer.fit_loop.max_epochs = epochs


def run_every_stage(trainer: Trainer, stages: int) -> None:
    """``fast_dev_run``: let the fit run ``stages`` epochs (one per stage, each of the
    ``fast_dev_run`` batches Lightning already limits every loader to).

    Why: Lightning's fast_dev_run sets ``max_epochs=1`` and ``max_steps=n``, which would
    stop inside the first stage and never reach an export. Read from: ``trainer/setup.py``
    (``_init_debugging_flags``: ``fit_loop.epoch_loop.max_steps = n``,
    ``fit_loop.max_epochs = 1``, ``limit_*_batches = n``).
    """
    trainer.fit_loop.max_epochs = stages
    trainer.fit_loop.epoch_loop.max_steps = -1


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
    ``stopped_epoch``, ``stopping_reason``, ``best_score``), set here to their initial values.
    """
    for cb in trainer.callbacks:  # type: ignore[attr-defined]
        if isinstance(cb, ModelCheckpoint):
            cb.best_k_models, cb.kth_best_model_path = {}, ""
            cb.best_model_score, cb.best_model_path = None, ""
            cb.kth_value = torch.tensor(math.inf if cb.mode == "min" else -math.inf)
        elif isinstance(cb, EarlyStopping):
            cb.wait_count, cb.stopped_epoch = 0, 0
            cb.stopping_reason, cb.stopping_reason_message = EarlyStoppingReason.NOT_STOPPED, None
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


def training_loss_on(trainer: Trainer, pl_module: LightningModule, batch: Any) -> Any:
    """The user's ``training_step`` loss on ``batch`` (an alternating step's validation
    batch), its ``self.log`` calls silenced, under the fit's precision context.

    Read from: ``plugins/precision/precision.py`` (``forward_context``: the autocast the
    training step runs under) and ``core/module.py`` (a ``training_step`` may return the
    loss or a dict with ``"loss"``).
    """
    with silenced_log(pl_module), trainer.precision_plugin.forward_context():
        out = pl_module.training_step(batch, 0)
    return out["loss"] if isinstance(out, Mapping) else out


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
