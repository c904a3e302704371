"""The generic LightningModules the application trains: a classifier and an autoencoder.

Both hold the network as ``self.net`` (the attribute :class:`~lightning_dnas.DNASCallback`
finds and replaces), build their optimizer from a Hydra ``_partial_`` optimizer
(``optimizer(params) -> torch.optim.Optimizer``) and log ``val_loss`` (the callback's
default monitor). :meth:`evaluate` computes a split's metrics outside the fit loop, which
is how the application measures each stage's network on the validation and test sets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from lightning_dnas.data import anomaly_auc, clip_scores

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]


class _Base(LightningModule):
    def __init__(self, net: nn.Module, optimizer: OptimizerFactory,
                 anneal_epochs: int | None = None) -> None:  # fmt: skip
        super().__init__()
        self.net = net
        self.optimizer = optimizer
        self.anneal_epochs = anneal_epochs

    def forward(self, x: Tensor) -> Tensor:
        """The network's output."""
        return self.net(x)

    def configure_optimizers(self) -> Any:
        """The configured optimizer over the current network's parameters (called again by
        the callback after every export); with ``anneal_epochs``, a cosine learning-rate
        schedule from the configured rate to 0 over that many epochs."""
        optimizer = self.optimizer(self.parameters())
        if not self.anneal_epochs:
            return optimizer
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, self.anneal_epochs)
        return {"optimizer": optimizer, "lr_scheduler": schedule}

    @torch.no_grad()
    def evaluate(self, loader: Iterable[Any]) -> dict[str, float]:
        """Metrics of the current network over ``loader`` in eval mode (training mode is
        restored afterwards)."""
        was_training = self.training
        self.eval()
        try:
            return self._evaluate(loader)
        finally:
            self.train(was_training)

    def _evaluate(self, loader: Iterable[Any]) -> dict[str, float]:
        raise NotImplementedError


class ClassificationModule(_Base):
    """Cross-entropy classification; logs ``train_loss``, ``val_loss``, ``val_acc``.

    Args:
        net: the network (logits out).
        optimizer: ``f(params) -> Optimizer``, e.g. a Hydra ``_partial_`` Adam.
        num_classes: number of classes (for the accuracy metric).
        anneal_epochs: if given, the learning rate follows a cosine from the configured
            rate to 0 over this many epochs.
    """

    def __init__(self, net: nn.Module, optimizer: OptimizerFactory, num_classes: int,
                 anneal_epochs: int | None = None) -> None:  # fmt: skip
        super().__init__(net, optimizer, anneal_epochs)
        self.num_classes = num_classes
        self.val_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        """Cross-entropy of one batch (the callback adds its regulariser to it)."""
        x, y = batch
        loss = F.cross_entropy(self.net(x), y)
        self.log("train_loss", loss, on_epoch=True, on_step=False)
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        """Logs ``val_loss`` and ``val_acc``."""
        x, y = batch
        logits = self.net(x)
        self.log("val_loss", F.cross_entropy(logits, y))
        self.val_acc(logits, y)
        self.log("val_acc", self.val_acc)

    def _evaluate(self, loader: Iterable[Any]) -> dict[str, float]:
        acc = MulticlassAccuracy(num_classes=self.num_classes, average="micro").to(self.device)
        total, count = 0.0, 0
        for x, y in loader:
            x, y = x.to(self.device), y.to(self.device)
            logits = self.net(x)
            total += float(F.cross_entropy(logits, y, reduction="sum"))
            count += len(y)
            acc.update(logits, y)
        return {"acc": float(acc.compute()), "loss": total / max(count, 1)}


class AutoEncoderModule(_Base):
    """MSE autoencoder for anomaly detection; logs ``train_loss`` and ``val_loss``.

    :meth:`evaluate` reports ``mse`` on frame-vector batches ``(x, x)`` and, on the ToyCar
    datamodule's clip batches ``(x, y, lengths)``, ``auc`` (of the per-clip reconstruction
    error, :func:`~lightning_dnas.data.clip_scores`) as well.
    """

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        """Reconstruction MSE of one batch."""
        x, target = batch
        loss = F.mse_loss(self.net(x), target)
        self.log("train_loss", loss, on_epoch=True, on_step=False)
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        """Logs ``val_loss`` (the reconstruction MSE)."""
        x, target = batch
        self.log("val_loss", F.mse_loss(self.net(x), target))

    def _evaluate(self, loader: Iterable[Any]) -> dict[str, float]:
        scores, labels, total, count = [], [], 0.0, 0
        for batch in loader:
            batch = [t.to(self.device) for t in batch]
            if len(batch) == 3:  # whole clips (x [B, V, D], y, lengths): the test split
                s = clip_scores(self.net, batch)
                scores.append(s)
                labels.append(batch[1])
                total += float(s.sum())
                count += len(s)
            else:
                x, target = batch
                total += float(F.mse_loss(self.net(x), target, reduction="sum")) / x[0].numel()
                count += len(x)
        out = {"mse": total / max(count, 1)}
        if scores:
            out["auc"] = anomaly_auc(torch.cat(scores), torch.cat(labels))
        return out
