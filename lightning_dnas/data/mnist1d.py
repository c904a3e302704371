"""MNIST-1D (Greydanus, 2020) generated locally as PyTorch tensors.

The ``mnist1d`` package can download a pickled copy of the dataset (``get_dataset``); this
module never does: it always builds the samples from the package's templates with
``mnist1d.data.make_dataset``, which is deterministic for a given seed and needs no network.
"""

from __future__ import annotations

import random

import numpy as np
import torch
from mnist1d.data import get_dataset_args, make_dataset
from torch import Tensor
from torch.utils.data import TensorDataset

from ._base import BaseDataModule


def mnist1d_tensors(
    num_samples: int = 4000, seed: int = 42, train_split: float = 0.8
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Generate MNIST-1D and return ``(x_train, y_train, x_test, y_test)``.

    Signals are float32 tensors shaped ``[N, 1, 40]`` (one channel of 40 samples), labels
    int64 tensors in ``0..9``. ``num_samples`` is the total (rounded down to a multiple of
    10, the samples are balanced over the 10 classes), of which the first ``train_split``
    fraction (after ``make_dataset``'s own shuffle) is the training set.

    No extra standardisation is applied: ``make_dataset`` already centres the signals and
    scales them to unit standard deviation (one mean and one scale for the whole set).
    ``make_dataset`` reseeds Python's and NumPy's global generators; their states are
    restored afterwards, so calling this function has no effect on other random numbers.
    """
    if num_samples < 10:
        raise ValueError(f"MNIST-1D needs at least one sample per class, got {num_samples}")
    if not 0.0 < train_split < 1.0:
        raise ValueError(f"train_split must be in (0, 1), got {train_split}")
    args = get_dataset_args()
    args.num_samples = num_samples
    args.seed = seed
    args.train_split = train_split
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        data = make_dataset(args)
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)

    def signals(x: np.ndarray) -> Tensor:
        return torch.from_numpy(np.asarray(x, dtype=np.float32)).unsqueeze(1)

    def labels(y: np.ndarray) -> Tensor:
        return torch.from_numpy(np.asarray(y, dtype=np.int64))

    return signals(data["x"]), labels(data["y"]), signals(data["x_test"]), labels(data["y_test"])


def validation_split(
    x: Tensor, y: Tensor, fraction: float = 0.1
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Split a training set into ``(x_train, y_train, x_val, y_val)``: the last ``fraction``
    of the samples (at least one) become the validation set.

    The MNIST-1D samples are already shuffled by ``make_dataset``, so a tail split is a
    random, deterministic one.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    n_val = max(1, round(len(y) * fraction))
    if n_val >= len(y):
        raise ValueError(f"{len(y)} samples are too few to hold out a validation split")
    cut = len(y) - n_val
    return x[:cut], y[:cut], x[cut:], y[cut:]


class MNIST1DDataModule(BaseDataModule):
    """MNIST-1D (Greydanus, 2020), the embedded default dataset.

    Samples ``x`` are float32 ``[N, 1, 40]``, labels int64 in ``0..9`` (``num_classes`` 10).
    ``num_samples`` are generated with ``seed`` by :func:`mnist1d_tensors` (80% train,
    20% test); the last ``val_fraction`` of the training samples is the validation set.
    """

    num_classes = 10
    input_shape = (1, 40)

    def __init__(
        self,
        num_samples: int = 4000,
        batch_size: int = 32,
        val_fraction: float = 0.1,
        seed: int = 42,
        num_workers: int = 0,
    ) -> None:
        super().__init__(batch_size, num_workers, seed)
        self.num_samples = num_samples
        self.val_fraction = val_fraction

    def _make_splits(self) -> None:
        """Generate the samples (once) and build the three splits."""
        x_train, y_train, x_test, y_test = mnist1d_tensors(self.num_samples, seed=self.seed)
        x_train, y_train, x_val, y_val = validation_split(x_train, y_train, self.val_fraction)
        self.train_set = TensorDataset(x_train, y_train)
        self.val_set = TensorDataset(x_val, y_val)
        self.test_set = TensorDataset(x_test, y_test)
