"""DigitsDataModule: scikit-learn's 8x8 digits, scaling, deterministic splits."""

import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

from lightning_dnas.data import DigitsDataModule
from tests.data.fitting import fit_and_test


def all_x(dataset: torch.utils.data.TensorDataset) -> torch.Tensor:
    return dataset.tensors[0]


def test_shapes_sizes_and_unit_scaling() -> None:
    dm = DigitsDataModule(batch_size=8, seed=0)
    dm.setup("fit")
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (1258, 180, 359)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 1, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
    xs = torch.cat([all_x(dm.train_set), all_x(dm.val_set), all_x(dm.test_set)])
    assert float(xs.min()) == 0.0 and float(xs.max()) == 1.0
    # every image appears once: the splits are a partition of load_digits' images
    reference = torch.as_tensor(load_digits().images, dtype=torch.float32) / 16
    key = lambda t: sorted(map(tuple, t.flatten(1).tolist()))  # noqa: E731
    assert key(xs) == key(reference)
    assert dm.example_input.shape == (1, 1, 8, 8) and dm.num_classes == 10


def test_standard_scaling_uses_training_statistics() -> None:
    dm = DigitsDataModule(scaling="standard")
    dm.setup()
    x = all_x(dm.train_set)
    assert abs(float(x.mean())) < 1e-5 and abs(float(x.std()) - 1) < 1e-5


def test_split_is_deterministic_by_seed() -> None:
    a, b, c = DigitsDataModule(seed=1), DigitsDataModule(seed=1), DigitsDataModule(seed=2)
    for dm in (a, b, c):
        dm.setup()
    assert torch.equal(all_x(a.test_set), all_x(b.test_set))
    assert not torch.equal(all_x(a.test_set), all_x(c.test_set))


def test_invalid_scaling() -> None:
    with pytest.raises(ValueError):
        DigitsDataModule(scaling="minmax")


def test_trainer_fit() -> None:
    fit_and_test(DigitsDataModule(batch_size=256), nn.Sequential(nn.Flatten(), nn.Linear(64, 10)))
