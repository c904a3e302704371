"""MNIST1DDataModule: split sizes, shapes, seeded shuffling, Trainer.fit."""

import torch
from torch import nn

from lightning_dnas.data import DATAMODULES, MNIST1DDataModule
from tests.data.fitting import fit_and_test


def test_shapes_and_split_sizes() -> None:
    dm = MNIST1DDataModule(num_samples=200, batch_size=16, val_fraction=0.1, seed=3)
    dm.setup("fit")
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (144, 16, 40)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (16, 1, 40) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert dm.num_classes == 10 and dm.input_shape == (1, 40)
    assert dm.example_input.shape == (1, 1, 40)
    assert DATAMODULES["mnist1d"] is MNIST1DDataModule


def test_seeded_shuffling_is_reproducible() -> None:
    def first_labels(seed: int) -> list[int]:
        dm = MNIST1DDataModule(num_samples=200, batch_size=16, seed=seed)
        dm.setup("fit")
        loader = dm.train_dataloader()
        return [next(iter(loader))[1].tolist(), next(iter(loader))[1].tolist()]

    a = first_labels(1)
    assert a == first_labels(1)
    assert a[0] != a[1]  # a new order each epoch


def test_trainer_fit() -> None:
    dm = MNIST1DDataModule(num_samples=100, batch_size=20)
    fit_and_test(dm, nn.Sequential(nn.Flatten(), nn.Linear(40, 10)))
