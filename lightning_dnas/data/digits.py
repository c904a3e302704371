"""scikit-learn's handwritten digits (8x8 images, bundled with scikit-learn)."""

from __future__ import annotations

import torch
from torch.utils.data import TensorDataset

from ._base import BaseDataModule, split_indices


class DigitsDataModule(BaseDataModule):
    """The UCI optical-recognition digits shipped with scikit-learn (``load_digits``,
    1797 images), a small 2-D dataset that needs no download.

    Samples ``x`` are float32 ``[N, 1, 8, 8]``, labels int64 in ``0..9``. ``scaling``
    ``"unit"`` divides the 0..16 pixel values by 16 (range [0, 1]); ``"standard"``
    subtracts the training set's mean and divides by its standard deviation (one scalar
    each). The samples are split at random, deterministically for ``seed``, into
    ``test_fraction`` test, ``val_fraction`` validation and the rest training samples.
    """

    num_classes = 10
    input_shape = (1, 8, 8)

    def __init__(
        self,
        batch_size: int = 32,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        scaling: str = "unit",
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__(batch_size, num_workers, seed)
        if scaling not in ("unit", "standard"):
            raise ValueError(f"scaling must be 'unit' or 'standard', got {scaling!r}")
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.scaling = scaling

    def _make_splits(self) -> None:
        """Load the bundled images (once) and build the three splits."""
        from sklearn.datasets import load_digits

        digits = load_digits()
        x = torch.as_tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
        y = torch.as_tensor(digits.target, dtype=torch.int64)
        test, val, train = split_indices(len(y), [self.test_fraction, self.val_fraction], self.seed)
        if self.scaling == "standard":
            mean, std = x[train].mean(), x[train].std()
            x = (x - mean) / std
        self.train_set = TensorDataset(x[train], y[train])
        self.val_set = TensorDataset(x[val], y[val])
        self.test_set = TensorDataset(x[test], y[test])
