"""Small LightningModules and data for the callback tests."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch import Callback, LightningModule
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics.classification import MulticlassAccuracy

from lightning_dnas import SuperNetModule


class TinyTCN(nn.Module):
    """Conv1d -> BN -> ReLU -> Conv1d -> BN -> ReLU -> mean -> Linear on (N, 1, 16)."""

    def __init__(self, channels: int = 6, kernel: int = 3) -> None:
        super().__init__()
        self.c1 = nn.Conv1d(1, channels, kernel, padding=kernel // 2, bias=False)
        self.b1 = nn.BatchNorm1d(channels)
        self.c2 = nn.Conv1d(channels, channels, kernel, padding=kernel // 2, bias=False)
        self.b2 = nn.BatchNorm1d(channels)
        self.fc = nn.Linear(channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.b1(self.c1(x)))
        x = F.relu(self.b2(self.c2(x)))
        return self.fc(x.mean(-1))


class TinySuperNet(nn.Module):
    """A stem conv and one SuperNet choice (conv3, conv5, identity) before the head."""

    def __init__(self, channels: int = 6) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv1d(1, channels, 3, padding=1), nn.BatchNorm1d(channels),
                                  nn.ReLU())
        self.choice = SuperNetModule({
            "conv3": nn.Sequential(nn.Conv1d(channels, channels, 3, padding=1),
                                   nn.BatchNorm1d(channels), nn.ReLU()),
            "conv5": nn.Sequential(nn.Conv1d(channels, channels, 5, padding=2),
                                   nn.BatchNorm1d(channels), nn.ReLU()),
            "skip": nn.Identity(),
        })
        self.fc = nn.Linear(channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.choice(self.stem(x)).mean(-1))


class Classifier(LightningModule):
    """Cross-entropy classifier around ``net``; SGD with momentum and weight decay on
    ``self.parameters()`` (as most users write it)."""

    def __init__(self, net: nn.Module, lr: float = 0.05, weight_decay: float = 1e-3) -> None:
        super().__init__()
        self.net = net
        self.acc = MulticlassAccuracy(num_classes=3)
        self.lr, self.weight_decay = lr, weight_decay

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self.net(x)
        self.log("val_loss", F.cross_entropy(logits, y))
        self.acc(logits, y)
        self.log("val_acc", self.acc)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9,
                               weight_decay=self.weight_decay)


def toy_data(n: int = 96, seed: int = 0) -> TensorDataset:
    """Three classes of length-16 signals: a bump at the start, middle or end, plus noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    x = 0.5 * torch.randn(n, 1, 16, generator=g)
    for i, c in enumerate(y.tolist()):
        x[i, 0, 5 * c:5 * c + 5] += 1.5
    return TensorDataset(x, y)


def loaders(batch_size: int = 16, n: int = 96) -> tuple[DataLoader, DataLoader]:
    """Shuffled training loader and a fixed validation loader over the toy data."""
    return (DataLoader(toy_data(n, 0), batch_size=batch_size, shuffle=True),
            DataLoader(toy_data(n // 2, 1), batch_size=batch_size))


def fit_with_epoch_checkpoints(module: LightningModule, dnas: Callback, tmp_path: Path,
                               max_epochs: int, ckpt_path: str | Path | None = None,
                               extra: tuple[Callback, ...] = ()) -> None:  # fmt: skip
    """The resume tests' fit: deterministic, a checkpoint ``<tmp_path>/epoch=<e>.ckpt``
    after every epoch, no logger or progress output, on :func:`loaders` (96 samples,
    batches of 16); ``ckpt_path`` resumes from one of those checkpoints; ``extra``: more
    callbacks."""
    every = ModelCheckpoint(dirpath=tmp_path, filename="{epoch}", save_top_k=-1,
                            every_n_epochs=1)
    trainer = L.Trainer(max_epochs=max_epochs, deterministic=True,
                        callbacks=[dnas, every, *extra],
                        logger=False, enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0)  # fmt: skip
    train, val = loaders(batch_size=16, n=96)
    trainer.fit(module, train, val, ckpt_path=ckpt_path)
