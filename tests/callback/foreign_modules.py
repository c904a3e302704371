"""LightningModules shaped as other projects write them (our own code, written from the
facts of theirs), with the tiny random data the tests fit them on.

- :class:`TemplateClassifier`: the shape of lightning-hydra-template's ``MNISTLitModule``
  (``src/models/mnist_module.py``): the network passed to ``__init__``,
  ``save_hyperparameters(logger=False)`` (here ``ignore=["net"]``), the optimizer and the
  scheduler given as ``functools.partial`` hyperparameters, torchmetrics ``Accuracy`` /
  ``MeanMetric`` / ``MaxMetric`` children, a ``model_step``, ``"val/loss"`` (with a slash)
  monitored by a ``ReduceLROnPlateau``, the best accuracy logged at each validation end.
- :class:`TinyGAN`: manual optimization with a generator and a discriminator, each with
  its own optimizer, the discriminator stepped first (Lightning's GAN example order).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import Accuracy


class DenseNet(nn.Module):
    """Flatten -> (Linear -> BatchNorm -> ReLU) x 2 -> Linear: an MLP classifier on
    ``(N, 1, 4, 4)`` images, as the template's ``SimpleDenseNet`` (smaller)."""

    def __init__(self, inputs: int = 16, hidden: tuple[int, int] = (24, 12),
                 classes: int = 4) -> None:  # fmt: skip
        super().__init__()
        a, b = hidden
        self.model = nn.Sequential(
            nn.Flatten(), nn.Linear(inputs, a), nn.BatchNorm1d(a), nn.ReLU(),
            nn.Linear(a, b), nn.BatchNorm1d(b), nn.ReLU(), nn.Linear(b, classes),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class TemplateClassifier(LightningModule):
    """The template's classifier shape around ``net``; ``optimizer(params=...)`` and
    ``scheduler(optimizer=...)`` are partials saved as hyperparameters."""

    def __init__(self, net: nn.Module, optimizer: Callable[..., torch.optim.Optimizer],
                 scheduler: Callable[..., Any] | None, classes: int = 4) -> None:  # fmt: skip
        super().__init__()
        self.save_hyperparameters(logger=False, ignore=["net"])
        self.net = net
        self.criterion = nn.CrossEntropyLoss()
        self.train_acc = Accuracy(task="multiclass", num_classes=classes)
        self.val_acc = Accuracy(task="multiclass", num_classes=classes)
        self.train_loss, self.val_loss = MeanMetric(), MeanMetric()
        self.val_acc_best = MaxMetric()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def on_train_start(self) -> None:
        self.val_loss.reset()
        self.val_acc.reset()
        self.val_acc_best.reset()

    def model_step(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, y = batch
        logits = self.forward(x)
        return self.criterion(logits, y), logits.argmax(dim=1), y

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss, preds, targets = self.model_step(batch)
        self.train_loss(loss)
        self.train_acc(preds, targets)
        self.log("train/loss", self.train_loss, on_step=False, on_epoch=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        loss, preds, targets = self.model_step(batch)
        self.val_loss(loss)
        self.val_acc(preds, targets)
        self.log("val/loss", self.val_loss, on_step=False, on_epoch=True)
        self.log("val/acc", self.val_acc, on_step=False, on_epoch=True)

    def on_validation_epoch_end(self) -> None:
        self.val_acc_best(self.val_acc.compute())
        self.log("val/acc_best", self.val_acc_best.compute())

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = self.hparams.optimizer(params=self.parameters())
        if self.hparams.scheduler is None:
            return {"optimizer": optimizer}
        scheduler = self.hparams.scheduler(optimizer=optimizer)
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "monitor": "val/loss",
                                 "interval": "epoch", "frequency": 1}}  # fmt: skip


def template_classifier() -> TemplateClassifier:
    """The classifier as a Hydra config would build it: Adam and ReduceLROnPlateau partials."""
    return TemplateClassifier(
        DenseNet(),
        optimizer=functools.partial(torch.optim.Adam, lr=1e-2, weight_decay=0.0),
        scheduler=functools.partial(torch.optim.lr_scheduler.ReduceLROnPlateau, mode="min",
                                    factor=0.1, patience=10),
    )  # fmt: skip


def image_loaders(n: int = 64, batch_size: int = 16) -> tuple[DataLoader, DataLoader]:
    """Four classes of ``(1, 4, 4)`` images: a bright quadrant (the class) plus noise."""
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 4, (n,), generator=g)
    x = 0.3 * torch.randn(n, 1, 4, 4, generator=g)
    for i, c in enumerate(y.tolist()):
        r, col = divmod(c, 2)
        x[i, 0, 2 * r:2 * r + 2, 2 * col:2 * col + 2] += 1.0
    data = TensorDataset(x, y)
    train = DataLoader(data, batch_size=batch_size, shuffle=True,
                       generator=torch.Generator().manual_seed(1))  # fmt: skip
    return train, DataLoader(data, batch_size=batch_size)


class TinyGAN(LightningModule):
    """A GAN on 8-dim vectors: ``generator`` (latent 4 -> 16 hidden -> 8) and
    ``discriminator`` (8 -> 16 hidden -> 1 logit), trained with manual optimization: per
    batch the discriminator's step (real vs detached fakes), then the generator's."""

    def __init__(self, latent: int = 4, hidden: int = 16, features: int = 8) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.latent = latent
        self.generator = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(),
                                       nn.Linear(hidden, features))  # fmt: skip
        self.discriminator = nn.Sequential(nn.Linear(features, hidden), nn.LeakyReLU(0.2),
                                           nn.Linear(hidden, 1))  # fmt: skip

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.generator(z)

    def training_step(self, batch: Any, batch_idx: int) -> None:
        (real,) = batch
        g_opt, d_opt = self.optimizers()
        z = torch.randn(real.shape[0], self.latent)
        fake = self.generator(z)
        real_logit, fake_logit = self.discriminator(real), self.discriminator(fake.detach())
        d_loss = (F.binary_cross_entropy_with_logits(real_logit, torch.ones_like(real_logit))
                  + F.binary_cross_entropy_with_logits(fake_logit, torch.zeros_like(fake_logit)))
        d_opt.zero_grad()
        self.manual_backward(d_loss)
        d_opt.step()
        fooled = self.discriminator(fake)
        g_loss = F.binary_cross_entropy_with_logits(fooled, torch.ones_like(fooled))
        g_opt.zero_grad()
        self.manual_backward(g_loss)
        g_opt.step()
        self.log_dict({"g_loss": g_loss, "d_loss": d_loss})

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        return [torch.optim.Adam(self.generator.parameters(), lr=1e-3),
                torch.optim.Adam(self.discriminator.parameters(), lr=1e-3)]  # fmt: skip


def gan_loader(n: int = 64, batch_size: int = 16) -> DataLoader:
    """Real samples: 8-dim Gaussian vectors around a fixed mean."""
    g = torch.Generator().manual_seed(0)
    real = 0.5 * torch.randn(n, 8, generator=g) + torch.linspace(-1, 1, 8)
    return DataLoader(TensorDataset(real), batch_size=batch_size)
