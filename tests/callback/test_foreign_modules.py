"""Modules shaped unlike the project's own: errors that say what to do, the network built
in ``configure_model`` with ``network=``, and LightningModules nobody on this project
wrote, each through a short real fit: lightning-hydra-template's classifier shape
(``save_hyperparameters`` + torchmetrics + partials), Lightning's ``BoringModel`` and demo
``LightningTransformer``, a manual-optimization GAN (``foreign_modules.py``), torchvision's
and timm's MobileNetV3 inside a LightningModule."""

from __future__ import annotations

import lightning as L
import pytest
import timm
import torch
import torchvision
from lightning.pytorch import Callback
from lightning.pytorch.demos import LightningTransformer
from lightning.pytorch.demos.boring_classes import BoringDataModule, BoringModel
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_dnas import PIT, DNASCallback, UnsupportedModelError
from lightning_dnas.nas.engine import DNAS

from .foreign_modules import DenseNet, TinyGAN, gan_loader, image_loaders, template_classifier
from .modules import Classifier, TinyTCN, loaders


def _trainer(dnas: DNASCallback) -> L.Trainer:
    return L.Trainer(callbacks=[dnas], logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False,
                     num_sanity_val_steps=0)  # fmt: skip


class BranchyRoot(TinyTCN):
    """A Python branch on a tensor's value in the network's own forward."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            x = -x
        return super().forward(x)


def test_an_untraceable_root_forward_gets_advice_that_can_be_followed():
    with pytest.raises(UnsupportedModelError) as info:
        PIT(BranchyRoot(), torch.randn(2, 1, 16))
    message = str(info.value)
    assert "the top-level module" not in message and "leaf_modules=['" not in message
    assert "BranchyRoot.forward traceable" in message and "network='<attribute>'" in message


def test_a_shape_error_names_where_the_example_input_came_from():
    train, val = loaders()
    model = Classifier(TinyTCN())
    model.example_input_array = torch.randn(4, 3, 16)  # 3 channels for a 1-channel conv
    with pytest.raises(MisconfigurationException) as info:
        _trainer(DNASCallback(export_dir=False)).fit(model, train, val)
    message = str(info.value)
    assert "shape [4, 3, 16]" in message and "Classifier.example_input_array" in message
    assert "example_input=" in message


def test_network_given_by_name_and_built_in_configure_model():
    train, val = loaders()

    class Late(Classifier):
        """The network under ``backbone``, built in configure_model (idempotently, as
        Lightning asks), next to a second trainable child the callback must not pick."""

        def __init__(self):
            super().__init__(nn.Identity())
            del self.net
            self.extra = nn.Linear(2, 2)

        def configure_model(self):
            if not hasattr(self, "backbone"):
                self.backbone = TinyTCN()

        def training_step(self, batch, batch_idx):
            x, y = batch
            return nn.functional.cross_entropy(self.backbone(x), y)

        def validation_step(self, batch, batch_idx):
            x, y = batch
            self.log("val_loss", nn.functional.cross_entropy(self.backbone(x), y))

    model = Late()
    dnas = DNASCallback(network="backbone", search_epochs=1, finetune_epochs=1,
                        export_dir=False)  # fmt: skip
    _trainer(dnas).fit(model, train, val)
    assert dnas.exported is model.backbone and not isinstance(model.backbone, DNAS)
    assert dnas.history[0]["stage"] == "0-search-pit"


# -- modules from other projects, each through a short real fit ---------------------------


class Probe(Callback):
    """Records, per epoch, what the training steps see at the module's attribute ``name``:
    ``"search"`` (a search network) or the class of the plain network."""

    def __init__(self, name: str) -> None:
        self.name, self.seen = name, {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        net = pl_module.get_submodule(self.name)
        self.seen.setdefault(trainer.current_epoch,
                             "search" if isinstance(net, DNAS) else type(net))  # fmt: skip


def _fit(module: L.LightningModule, dnas: DNASCallback, *loaders, probe: Probe | None = None,
         **options) -> L.Trainer:  # fmt: skip
    trainer = L.Trainer(callbacks=[dnas] + ([probe] if probe else []), logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0,
                        **options)  # fmt: skip
    trainer.fit(module, *loaders)
    return trainer


def _plain(net: nn.Module) -> bool:
    return not any(isinstance(m, DNAS) or type(m).__name__.startswith("Masked")
                   for m in net.modules())  # fmt: skip


def _linear_params(net: nn.Module) -> int:
    """Weights + biases of the Linear layers (the "params" cost: no BatchNorm)."""
    return sum(p.numel() for m in net.modules() if isinstance(m, nn.Linear)
               for p in m.parameters())  # fmt: skip


def _param_ids(params) -> set[int]:
    return {id(p) for p in params}


def test_a_lightning_hydra_template_classifier_is_searched_as_written():
    torch.manual_seed(0)
    model = template_classifier()
    probe = Probe("net")
    dnas = DNASCallback(monitor="val/loss", search_epochs=2, finetune_epochs=1, strength=3e-4,
                        arch_lr=0.2, export_dir=False)  # fmt: skip
    trainer = _fit(model, dnas, *image_loaders(), probe=probe)
    assert probe.seen == {0: "search", 1: "search", 2: DenseNet}  # found without network=
    record = dnas.history[0]
    assert record["best_epoch"] in (0, 1)  # scored on the template's "val/loss"
    assert dnas.exported is model.net and _plain(model.net)
    widths = [m.out_features for m in model.net.model if isinstance(m, nn.Linear)]
    assert record["removed"]["channels"] == (24 + 12) - sum(widths[:2]) > 0
    assert widths[2] == 4  # the class count is the graph output: kept
    assert record["costs"]["params"] == _linear_params(model.net)
    # The template's partials rebuilt Adam and the plateau scheduler for the exported net.
    (optimizer,) = trainer.optimizers
    assert _param_ids(p for g in optimizer.param_groups for p in g["params"]) == _param_ids(
        model.parameters())
    (scheduler,) = trainer.lr_scheduler_configs
    assert scheduler.monitor == "val/loss" and scheduler.scheduler.optimizer is optimizer
    assert "val/acc_best" in trainer.callback_metrics
    assert set(model.hparams) == {"optimizer", "scheduler", "classes"}


def test_the_template_with_the_default_monitor_is_told_what_is_logged():
    dnas = DNASCallback(search_epochs=1, finetune_epochs=1, export_dir=False)
    with pytest.warns(UserWarning, match=r"monitor 'val_loss' is not logged .*'val/loss'"):
        _fit(template_classifier(), dnas, *image_loaders(), limit_train_batches=2)
    assert dnas.history[0]["best_epoch"] is None  # the last search state was exported


@pytest.mark.parametrize("network", [None, "layer"])
def test_lightnings_boring_model_is_costed_and_told_nothing_can_be_searched(network):
    model = BoringModel()  # self.layer = nn.Linear(32, 2): the whole network
    dnas = DNASCallback("pit", network=network, cost="params", search_epochs=1,
                        finetune_epochs=1, export_dir=False)  # fmt: skip
    with pytest.warns(UserWarning) as caught:
        _fit(model, dnas, BoringDataModule(), limit_train_batches=2, limit_val_batches=1)
    said = [str(w.message) for w in caught]
    assert any("`layer` has nothing pit can search" in m for m in said), said
    assert dnas.history[0]["costs"] == {"params": 66.0}  # 32 * 2 weights + 2 biases
    assert sum(p.numel() for p in model.layer.parameters()) == 66
    assert dnas.exported is model.layer and type(model.layer) is nn.Linear


class OfflineTransformer(LightningTransformer):
    """Lightning's demo transformer; its ``prepare_data`` downloads WikiText2: not here."""

    def prepare_data(self) -> None:
        pass


def _tokens(vocab: int) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    return DataLoader(TensorDataset(torch.randint(0, vocab, (8, 6), generator=g),
                                    torch.randint(0, vocab, (8, 6), generator=g)),
                      batch_size=4)  # fmt: skip


def test_lightnings_demo_transformer_gets_an_error_quoting_the_line_and_what_to_do():
    model = OfflineTransformer(vocab_size=20)
    seed = model.model
    tokens = next(iter(_tokens(20)))
    dnas = DNASCallback(example_input=tuple(tokens), export_dir=False)
    with pytest.raises(UnsupportedModelError) as info:
        _fit(model, dnas, _tokens(20))
    message = str(info.value)
    assert "cannot trace Transformer: its own forward failed" in message
    assert "transformer.py:" in message and "`mask = torch.triu(torch.ones(size, size)" in message
    assert "no new tensor sized by a shape read from an input" in message
    assert "network='<attribute>'" in message
    assert model.model is seed and _plain(model)


def test_the_demo_transformer_following_the_advice_searches_its_decoder_alone():
    model = OfflineTransformer(vocab_size=20)
    dnas = DNASCallback(network="model.decoder", example_input=torch.randn(2, 6, 200),
                        search_epochs=1, finetune_epochs=1, export_dir=False)  # fmt: skip
    with pytest.warns(UserWarning, match="`model.decoder` has nothing pit can search"):
        _fit(model, dnas, _tokens(20), limit_train_batches=1)
    decoder = model.model.decoder  # Linear(200, vocab): the root layer of this network
    assert dnas.history[0]["costs"]["params"] == 200 * 20 + 20 == _linear_params(decoder)


def test_a_gan_generator_searched_on_the_batch_is_told_to_pass_its_input():
    dnas = DNASCallback(network="generator", export_dir=False)
    with pytest.raises(MisconfigurationException) as info:
        _fit(TinyGAN(), dnas, gan_loader())  # the batch holds real samples, not latents
    message = str(info.value)
    assert "shape [8, 8]" in message and "the first element of the first training batch" in message
    assert "pass DNASCallback(example_input=...)" in message


def test_a_manual_optimization_gan_searches_its_generator():
    torch.manual_seed(0)
    model = TinyGAN()
    discriminator = [p.detach().clone() for p in model.discriminator.parameters()]
    probe = Probe("generator")
    dnas = DNASCallback(network="generator", example_input=torch.randn(8, model.latent),
                        search_epochs=2, finetune_epochs=1, strength=2e-3, arch_lr=0.1,
                        export_dir=False)  # fmt: skip
    trainer = _fit(model, dnas, gan_loader(), probe=probe)
    assert probe.seen == {0: "search", 1: "search", 2: nn.Sequential}
    gen = model.generator
    assert dnas.exported is gen and _plain(gen)
    assert dnas.history[0]["removed"]["channels"] == 16 - gen[0].out_features > 0
    assert gen[2].in_features == gen[0].out_features and gen[2].out_features == 8
    assert dnas.history[0]["costs"]["params"] == _linear_params(gen)
    # The discriminator is the user's: same shapes, trained by its own optimizer only.
    g_opt, d_opt = trainer.optimizers
    assert _param_ids(g_opt.param_groups[0]["params"]) == _param_ids(gen.parameters())
    assert _param_ids(d_opt.param_groups[0]["params"]) == _param_ids(
        model.discriminator.parameters())
    after = list(model.discriminator.parameters())
    assert [p.shape for p in after] == [p.shape for p in discriminator]
    assert not any(torch.equal(a, b) for a, b in zip(after, discriminator, strict=True))


def _conv_linear_params(net: nn.Module) -> int:
    """Weights + biases of the Conv/Linear layers (the "params" cost: no norms)."""
    layers = (nn.Linear, nn.modules.conv._ConvNd)
    return sum(p.numel() for m in net.modules() if isinstance(m, layers)
               for p in m.parameters(recurse=False))  # fmt: skip


@pytest.mark.parametrize("zoo", ["torchvision", "timm"])
def test_a_zoo_model_inside_a_lightning_module_is_searched_and_costed(zoo):
    torch.manual_seed(0)
    net = (torchvision.models.mobilenet_v3_small(num_classes=3) if zoo == "torchvision"
           else timm.create_model("mobilenetv3_small_050", pretrained=False, num_classes=3))
    model, probe = Classifier(net), Probe("net")
    g = torch.Generator().manual_seed(0)
    data = DataLoader(TensorDataset(torch.randn(8, 3, 16, 16, generator=g),
                                    torch.randint(0, 3, (8,), generator=g)), batch_size=4)
    dnas = DNASCallback(search_epochs=1, finetune_epochs=1, strength=1e-5, arch_lr=0.3,
                        export_dir=False)  # fmt: skip
    _fit(model, dnas, data, data, probe=probe)
    assert probe.seen == {0: "search", 1: type(net)}
    assert dnas.exported is model.net and _plain(model.net)
    record = dnas.history[0]
    assert record["removed"]["channels"] > 0
    assert record["costs"]["params"] == _conv_linear_params(model.net) < _conv_linear_params(net)
