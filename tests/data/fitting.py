"""A minimal LightningModule to check that a data module drives ``Trainer.fit``/``test``."""

import lightning as L
import torch
from torch import nn


class TinyTask(L.LightningModule):
    """``net`` trained with cross-entropy (``loss="ce"``) or MSE (``loss="mse"``)."""

    def __init__(self, net: nn.Module, loss: str = "ce") -> None:
        super().__init__()
        self.net, self.loss = net, loss

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _loss(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        x, y = batch[0], batch[1]
        out = self(x)
        if self.loss == "ce":
            return nn.functional.cross_entropy(out, y)
        return nn.functional.mse_loss(out, y)

    def training_step(self, batch: tuple[torch.Tensor, ...], _idx: int) -> torch.Tensor:
        return self._loss(batch)

    def validation_step(self, batch: tuple[torch.Tensor, ...], _idx: int) -> None:
        self.log("val_loss", self._loss(batch))

    def test_step(self, batch: tuple[torch.Tensor, ...], _idx: int) -> None:
        self.log("test_loss", self._loss(batch))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=1e-3)


def trainer(**kwargs: object) -> L.Trainer:
    """A quiet CPU trainer for one short epoch."""
    options = dict(
        max_epochs=1,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    options.update(kwargs)
    return L.Trainer(**options)


def fit_and_test(dm: L.LightningDataModule, net: nn.Module, loss: str = "ce") -> None:
    """One epoch of ``Trainer.fit`` and a ``Trainer.test`` on ``dm``; checks the weights
    moved."""
    task = TinyTask(net, loss)
    before = [p.detach().clone() for p in net.parameters()]
    t = trainer()
    t.fit(task, datamodule=dm)
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))
    if loss == "ce":
        t.test(task, datamodule=dm, verbose=False)
