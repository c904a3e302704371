"""Stage behaviour of the callback: configuration errors, frozen architecture outside
search stages, weight decay never on architecture parameters, best-state export,
patience, EarlyStopping and ModelCheckpoint across export boundaries."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import nn

from lightning_dnas import DNASCallback, Stage
from lightning_dnas.nas.engine import DNAS
from lightning_dnas.stages import parse_stages

from .modules import Classifier, TinySuperNet, TinyTCN, loaders


def _trainer(*callbacks, max_epochs=None, **kwargs):
    return L.Trainer(max_epochs=max_epochs, callbacks=list(callbacks), logger=False,
                     enable_checkpointing=kwargs.pop("enable_checkpointing", False),
                     enable_progress_bar=False, enable_model_summary=False,
                     num_sanity_val_steps=0, **kwargs)


@pytest.mark.parametrize("kwargs, message", [
    (dict(method="darts"), "valid methods"),
    (dict(softmax="sparsemax"), "valid"),
    (dict(cost="flops"), "built-in costs are"),
    (dict(search_mode="bilevel"), "valid"),
    (dict(stages=[Stage("finetune", 2)]), "no search stage"),
    (dict(stages=[Stage("warmup", 1, "pit"), Stage("finetune", 1), Stage("search", 1, "pit")]),
     "followed by a search"),
    (dict(stages=[{"kind": "search", "epochs": 2}]), "needs a method"),
    (dict(stages=[{"kind": "serach", "epochs": 2, "method": "pit"}]), "valid kinds"),
    (dict(stages=[{"kind": "search", "epochs": 0, "method": "pit"}]), "positive integer"),
    (dict(stages=[{"kind": "search", "epochs": 1, "method": "pit", "trian": ["masks"]}]),
     "valid keys"),
    (dict(stages=[{"kind": "search", "epochs": 1, "method": "pit", "train": ["mask"]}]),
     "valid: ['logits', 'masks']"),
])
def test_bad_configuration_is_refused_with_the_valid_choices(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message.replace("[", r"\[")):
        DNASCallback(**kwargs)


def test_setup_errors_name_the_problem():
    train, val = loaders()

    class TwoNets(Classifier):
        def __init__(self):
            super().__init__(TinyTCN())
            self.other = nn.Linear(2, 2)

    with pytest.raises(MisconfigurationException, match=r"\['net', 'other'\].*network="):
        _trainer(DNASCallback(export_dir=False)).fit(TwoNets(), train, val)
    with pytest.raises(MisconfigurationException, match=r"need 20 epochs.*max_epochs=3"):
        _trainer(DNASCallback(export_dir=False), max_epochs=3).fit(
            Classifier(TinyTCN()), train, val)
    with pytest.raises(MisconfigurationException, match="unknown costs"):
        _trainer(DNASCallback(strength={"macs": 1.0}, export_dir=False)).fit(
            Classifier(TinyTCN()), train, val)
    with pytest.raises(MisconfigurationException, match="do not apply to method 'supernet'"):
        _trainer(DNASCallback("supernet", converter={"exclude": ["c1"]},
                              export_dir=False)).fit(Classifier(TinySuperNet()), train, val)


class Snapshots(Callback):
    """Records the architecture parameters at every epoch start."""

    def __init__(self) -> None:
        self.seen: list[dict[str, torch.Tensor] | None] = []

    def on_train_epoch_start(self, trainer, pl_module):
        net = pl_module.net
        self.seen.append({n: p.detach().clone() for n, p in net.named_parameters()
                          if n.startswith(("channel_masks", "tap_masks")) or
                          n.endswith("alpha")} if isinstance(net, DNAS) else None)


def test_architecture_trains_only_in_search_and_never_gets_weight_decay():
    # Seeded: the alpha step's size below depends on the batches and the initial weights,
    # and an unseeded run inherited the RNG state of the tests before it in the worker.
    L.seed_everything(0)
    train, val = loaders()
    snaps = Snapshots()
    dnas = DNASCallback("pitsupernet", strength=0.0, warmup_epochs=2, search_epochs=2,
                        finetune_epochs=1, export_dir=False)
    module = Classifier(TinySuperNet(), weight_decay=0.5)
    trainer = _trainer(dnas, snaps)
    trainer.fit(module, train, val)
    assert trainer.current_epoch == 5
    warm0, warm1, search0, search1, fine = snaps.seen
    assert fine is None and not isinstance(module.net, DNAS)
    for name in warm0:
        assert torch.equal(warm0[name], warm1[name]), f"{name} changed in warmup"
        assert torch.equal(warm1[name], search0[name]), f"{name} changed in warmup"
    moved = [n for n in search0 if not torch.equal(search0[n], search1[n])]
    assert moved, "nothing moved during the search"
    # With strength 0 and a huge weight decay, a decayed alpha would shrink towards 0 by
    # a factor (1 - lr * wd) per step; Adam without decay moves each by about lr per step.
    alpha = search1["net.choice.alpha"]
    assert (alpha - search0["net.choice.alpha"]).abs().max() < 0.05


def test_user_optimizer_holds_no_architecture_parameter():
    train, val = loaders()

    class Check(Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            net = pl_module.net
            if isinstance(net, DNAS):
                arch = {id(p) for p in net.nas_parameters()}
                held = {id(p) for opt in trainer.optimizers for g in opt.param_groups
                        for p in g["params"]}
                assert not arch & held
                assert {id(p) for p in net.net_parameters()} <= held
            self.checked = getattr(self, "checked", 0) + 1

    check = Check()
    dnas = DNASCallback("pitsupernet", search_epochs=1, finetune_epochs=1, export_dir=False)
    _trainer(dnas, check).fit(Classifier(TinySuperNet()), train, val)
    assert check.checked == 2


class ScriptedLoss(Callback):
    """Overrides the logged val_loss with a scripted value per epoch."""

    def __init__(self, values):
        self.values = values

    def on_validation_epoch_end(self, trainer, pl_module):
        pl_module.log("val_loss", float(self.values[trainer.current_epoch]))


def test_export_takes_the_best_search_epoch_and_patience_ends_the_stage():
    train, val = loaders()
    snaps = Snapshots()
    # Search epochs 0..4 score 3, 1, 2, 2, 2: best is epoch 1; patience 2 ends it after 3.
    script = ScriptedLoss([3.0, 1.0, 2.0, 2.0, 2.0, 5.0, 5.0, 5.0, 5.0])
    dnas = DNASCallback(stages=[Stage("search", 5, "pit", patience=2), Stage("finetune", 2)],
                        strength=0.0, arch_lr=0.05, export_dir=False)
    module = Classifier(TinyTCN())
    trainer = _trainer(script, dnas, snaps)
    trainer.fit(module, train, val)
    assert dnas.history[0]["best_epoch"] == 1
    assert trainer.current_epoch == 6, "search ended after epoch 3, fine-tune ran 2 epochs"
    assert snaps.seen[4] is None, "epoch 4 is already the fine-tune"


def test_early_stopping_in_search_ends_the_stage_not_the_fit(tmp_path):
    train, val = loaders()
    script = ScriptedLoss([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 1.0, 0.5, 0.7, 0.9, 1.1])
    stop = EarlyStopping("val_loss", patience=1)
    best = ModelCheckpoint(dirpath=tmp_path, monitor="val_loss", save_top_k=1)
    dnas = DNASCallback("pit", search_epochs=6, finetune_epochs=5, strength=0.0,
                        export_dir=False)
    trainer = _trainer(script, dnas, stop, best, enable_checkpointing=True)
    trainer.fit(Classifier(TinyTCN()), train, val)
    # ES stops the search after epoch 1 (no improvement once); the fine-tune starts at 2.
    assert dnas.history[0]["best_epoch"] == 0
    assert trainer.current_epoch > 2
    # The best checkpoint is one of the final network (the search's 1.0 does not count).
    ckpt = torch.load(best.best_model_path, weights_only=False)
    assert ckpt["epoch"] >= 2 and float(best.best_model_score) >= 0.5
    assert "net.channel_masks" not in " ".join(ckpt["state_dict"])


def test_parse_stages_fills_warmup_method_and_names():
    stages = parse_stages([Stage("warmup", 1), Stage("search", 2, "pit"),
                           Stage("finetune", 1)])
    assert [s.method for s in stages] == ["pit", "pit", None]
    assert [s.name for s in stages] == ["0-warmup-pit", "1-search-pit", "2-finetune"]


def test_alternating_search_steps_the_architecture_on_validation_batches():
    train, val = loaders()
    snaps = Snapshots()
    dnas = DNASCallback("pit", strength=0.3, search_epochs=2, finetune_epochs=1,
                        search_mode="alternating", arch_lr=0.05, export_dir=False)
    module = Classifier(TinyTCN())
    _trainer(dnas, snaps).fit(module, train, val)
    first, second, _ = snaps.seen
    shrunk = [n for n in first if n.endswith("alpha") and
              (second[n].abs().sum() < first[n].abs().sum())]
    assert shrunk, "a strong size regulariser must shrink some channel mask"


def test_network_built_in_configure_model_is_found_and_searched():
    """The callback runs ``configure_model`` itself before converting (in its setup, before
    ``configure_optimizers``); Lightning's own later call cannot rebuild the network over
    the search network, even from a hook that is not idempotent."""
    train, val = loaders()
    calls = []

    class Late(Classifier):
        def __init__(self):
            super().__init__(nn.Identity())
            del self.net

        def configure_model(self):  # not idempotent: builds a new network every call
            calls.append(1)
            self.net = TinyTCN()

    model = Late()
    dnas = DNASCallback(search_epochs=1, finetune_epochs=1, export_dir=False)
    _trainer(dnas).fit(model, train, val)
    assert calls == [1] and dnas.network == "net"
    assert [h["stage"] for h in dnas.history] == ["0-search-pit"]
    assert dnas.exported is model.net and not isinstance(model.net, DNAS)
    assert "configure_model" not in vars(model), "the module's own hook is given back"


class Temperatures(Callback):
    def __init__(self) -> None:
        self.seen: list[tuple[float, str]] = []

    def on_train_epoch_start(self, trainer, pl_module):
        net = pl_module.net
        if isinstance(net, DNAS):
            choice = net.choices["choice"]
            self.seen.append((choice.temperature, choice.softmax))


def test_temperature_schedule_and_softmax_mode_follow_the_search_epochs():
    from lightning_dnas import temperature_schedule

    train, val = loaders()
    seen = Temperatures()
    schedule = temperature_schedule("linear", t0=2.0, t1=0.5, steps=3)
    dnas = DNASCallback("supernet", warmup_epochs=1, search_epochs=4, finetune_epochs=1,
                        softmax="hard_softmax", temperature=schedule, export_dir=False)
    _trainer(dnas, seen).fit(Classifier(TinySuperNet()), train, val)
    # The schedule counts the epochs of the current stage (warmup epoch 0 -> T(0) too).
    assert seen.seen == [(2.0, "hard_softmax"), (2.0, "hard_softmax"),
                         (1.5, "hard_softmax"), (1.0, "hard_softmax"), (0.5, "hard_softmax")]


def test_budget_target_switches_the_regulariser_off_below_the_budget():
    def fit(**kwargs):
        L.seed_everything(0)
        train, val = loaders()
        dnas = DNASCallback("pit", search_epochs=2, finetune_epochs=0, arch_lr=0.05,
                            export_dir=False, **kwargs)
        module = Classifier(TinyTCN())
        _trainer(dnas).fit(module, train, val)
        return dnas.history[0]["arch"], module.net.state_dict()

    free_arch, free_state = fit(strength=0.0)
    budget_arch, budget_state = fit(strength=10.0, target=1e9)
    taxed_arch, _ = fit(strength=10.0)
    # Far below the budget the hinge max(0, cost - target) is 0: the same fit as lambda 0.
    assert budget_arch == free_arch
    assert all(torch.equal(budget_state[k], v) for k, v in free_state.items())
    assert taxed_arch != free_arch


@pytest.mark.parametrize("method, net", [("pit", TinyTCN), ("supernet", TinySuperNet)])
def test_a_fit_that_ends_with_a_search_ends_exported(method, net):
    """The last stage being a search still exports its best state: ``exported`` and the
    module hold the plain network and ``history`` records the export."""
    train, val = loaders()
    model = Classifier(net())
    dnas = DNASCallback(stages=[Stage("search", 2, method)], export_dir=False)
    _trainer(dnas).fit(model, train, val)
    assert not isinstance(model.net, DNAS) and dnas.exported is model.net
    assert [h["stage"] for h in dnas.history] == ["0-search-" + method]
