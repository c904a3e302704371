"""A LightningModule whose network is two modules wired only in its own ``forward`` (a
backbone and a head): the subject of the several-networks tests
(``network=["backbone", "head"]``, lightning_dnas/network_group.py)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import nn

NAMES = ["backbone", "head"]


class Backbone(nn.Module):
    """Two Conv1d-BN-ReLU blocks on (N, 1, 16); the output is 8 feature maps."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.b1 = nn.Conv1d(1, 8, 3, padding=1), nn.BatchNorm1d(8)
        self.c2, self.b2 = nn.Conv1d(8, 8, 3, padding=1), nn.BatchNorm1d(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.b2(self.c2(F.relu(self.b1(self.c1(x))))))


class TwoPart(LightningModule):
    """A backbone and a head, wired only in this module's forward."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone, self.head = Backbone(), nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x).mean(-1))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", F.cross_entropy(self(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)
