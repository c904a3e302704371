"""A user's own ``torch.compile`` of the LightningModule with the callback (docs/CALLBACK.md,
"torch.compile"): the network is compiled once for training and once for validation
per network (a stage boundary that swaps it fails the compiled frames' guards on it once,
never once per layer or per epoch), the fit finds the same architecture as the eager fit.

The smallest network (TinyTCN) and the ``aot_eager`` backend (same dynamo graphs and
guards as inductor, no code generation): compiling is slow on 2 cores.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import pytest
import torch
import torch._dynamo
import torch.nn.functional as F
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import fx

from lightning_dnas.callback import DNASCallback

from .modules import Classifier, TinyTCN, loaders
from .two_part import NAMES, TwoPart

pytestmark = pytest.mark.compile


class PlainClassifier(Classifier):
    """The test Classifier without its torchmetrics accuracy (torchmetrics' update is not
    traceable by dynamo in this version: a package-metadata lookup inside it)."""

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", F.cross_entropy(self.net(x), y))


class NetworkGraphs:
    """A dynamo backend that counts the graphs holding the network (a conv1d call) and
    hands every graph to ``aot_eager``."""

    def __init__(self) -> None:
        self.count = 0
        self.inner = torch._dynamo.lookup_backend("aot_eager")

    def __call__(self, gm: fx.GraphModule, example_inputs: list[Any]) -> Any:
        if any(n.op == "call_function" and n.target is torch.conv1d for n in gm.graph.nodes):
            self.count += 1
        return self.inner(gm, example_inputs)


class PerEpoch(Callback):
    """The count of network graphs compiled so far, at the end of every epoch."""

    def __init__(self, graphs: NetworkGraphs) -> None:
        self.graphs, self.seen = graphs, []

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.seen.append(self.graphs.count)


def fit(compiled: bool, epochs: int = 2) -> tuple[DNASCallback, list[int]]:
    torch._dynamo.reset()
    L.seed_everything(0)
    train, val = loaders()
    dnas = DNASCallback("pit", warmup_epochs=epochs, search_epochs=epochs,
                        finetune_epochs=epochs, arch_lr=0.05, strength=3e-3,
                        export_dir=False)  # fmt: skip
    module = PlainClassifier(TinyTCN())
    graphs = NetworkGraphs()
    per_epoch = PerEpoch(graphs)
    trainer = L.Trainer(max_epochs=3 * epochs, callbacks=[dnas, per_epoch], logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0)  # fmt: skip
    trainer.fit(torch.compile(module, backend=graphs) if compiled else module, train, val)
    torch._dynamo.reset()
    return dnas, per_epoch.seen


def assert_same_search(compiled: DNASCallback, eager: DNASCallback) -> None:
    """The compiled fit found the eager fit's architectures and weights."""
    assert [h["arch"] for h in compiled.history] == [h["arch"] for h in eager.history]
    got, want = compiled.exported.state_dict(), eager.exported.state_dict()
    assert got.keys() == want.keys()
    for key, value in want.items():
        torch.testing.assert_close(got[key], value, rtol=1e-4, atol=1e-5)


def test_user_compiled_module_compiles_twice_per_stage_and_finds_the_eager_architecture():
    compiled, seen = fit(compiled=True)
    # Stages of 2 epochs each. Warmup and search run the same search network (converted
    # in setup): one training and one validation graph in the first epoch, nothing after.
    # The export at the fine-tune's start swaps the network: once more each, then nothing.
    assert seen == [2, 2, 2, 2, 4, 4]
    eager, _ = fit(compiled=False)
    assert_same_search(compiled, eager)


def test_a_recompile_limit_below_the_fits_network_count_is_raised(caplog):
    """With dynamo's cap at one entry per frame, the fine-tune's exported network (the
    fit's second network) would run eagerly; the callback raises the cap to the 2 networks
    of this stage list before the first step, says so, and both networks compile."""
    # config.patch, not monkeypatch: monkeypatch's undo deletes a dynamo config entry.
    with torch._dynamo.config.patch(recompile_limit=1), caplog.at_level("INFO"):
        _, seen = fit(compiled=True, epochs=1)
        assert torch._dynamo.config.recompile_limit == 2
    assert seen == [2, 2, 4]  # training + validation graph per network
    assert "raised torch._dynamo.config.recompile_limit from 1 to 2" in caplog.text


def test_several_networks_compiled_compile_once_per_network_and_find_the_eager_architecture():
    """``network=["backbone", "head"]`` in a compiled module: the module's compiled
    ``forward`` runs the parts the callback placed in its attributes (the masks each
    binarize themselves in the graph), so the export swaps them as one network: once more
    per frame, then nothing; the same architecture and weights as the eager fit."""

    def several(compiled: bool) -> tuple[DNASCallback, list[int]]:
        torch._dynamo.reset()
        L.seed_everything(0)
        dnas = DNASCallback("pit", network=NAMES, search_epochs=2, finetune_epochs=1,
                            arch_lr=0.05, strength=1e-3, export_dir=False)  # fmt: skip
        module, graphs = TwoPart(), NetworkGraphs()
        epochs = PerEpoch(graphs)
        trainer = L.Trainer(max_epochs=3, callbacks=[dnas, epochs], logger=False,
                            enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False, num_sanity_val_steps=0)  # fmt: skip
        trainer.fit(torch.compile(module, backend=graphs) if compiled else module, *loaders())
        torch._dynamo.reset()
        return dnas, epochs.seen

    compiled, seen = several(compiled=True)
    assert seen == [2, 2, 4]  # the search: one network; the fine-tune: its export
    kept = compiled.history[0]["arch"]["modules"]["backbone.c2"]["out"]
    assert kept is not None and len(kept) < 8, "the search removed none of the shared channels"
    eager, _ = several(compiled=False)
    assert_same_search(compiled, eager)
