"""CIFAR10DataModule on tiny batch files written in the official python pickle format."""

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from lightning_dnas.data import CIFAR10DataModule, DatasetNotFoundError
from tests.data.fitting import fit_and_test

PER_BATCH, TEST_IMAGES = 4, 5
NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_cifar10(root: Path) -> dict[str, tuple[np.ndarray, list[int]]]:
    """``root/cifar-10-batches-py`` with 5 x 4 training and 5 test images; returns what
    each file holds (images ``[N, 3072]`` uint8, labels)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    written = {}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for k, name in enumerate(names):
        n = TEST_IMAGES if name == "test_batch" else PER_BATCH
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = [(k * n + i) % 10 for i in range(n)]
        batch = {
            "batch_label": f"{name} of 5",
            "labels": labels,
            "data": data,
            "filenames": [f"img_{k}_{i}.png" for i in range(n)],
        }
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
        written[name] = (data, labels)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": NAMES, "num_cases_per_batch": PER_BATCH}, f, protocol=2)
    return written


def normalised(data: np.ndarray) -> torch.Tensor:
    """Independent reference: rows ``[N, 3072]`` (R, G, B planes) -> normalised floats."""
    mean = np.array([0.4914, 0.4822, 0.4465]).reshape(1, 3, 1, 1)
    std = np.array([0.2470, 0.2435, 0.2616]).reshape(1, 3, 1, 1)
    x = data.reshape(-1, 3, 32, 32).astype(np.float64) / 255.0
    return torch.from_numpy((x - mean) / std).float()


def test_shapes_splits_and_values(tmp_path: Path) -> None:
    written = write_cifar10(tmp_path)
    dm = CIFAR10DataModule(tmp_path, batch_size=3, seed=0)
    dm.prepare_data()
    dm.setup("fit")
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (16, 4, TEST_IMAGES)
    assert dm.classes == NAMES and dm.num_classes == 10
    assert dm.input_shape == (3, 32, 32) and dm.example_input.shape == (1, 3, 32, 32)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (3, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    # test set: the test batch, in order, not augmented
    dm.batch_size = TEST_IMAGES
    x_test, y_test = next(iter(dm.test_dataloader()))
    data, labels = written["test_batch"]
    assert torch.allclose(x_test, normalised(data), atol=1e-5)
    assert y_test.tolist() == labels


def test_validation_split_is_seeded_and_disjoint(tmp_path: Path) -> None:
    written = write_cifar10(tmp_path)
    train_rows = np.concatenate([written[f"data_batch_{i}"][0] for i in range(1, 6)])
    all_train = normalised(train_rows)

    def val_rows(seed: int) -> list[int]:
        dm = CIFAR10DataModule(tmp_path, seed=seed, augment=False)
        dm.setup("fit")
        x_val = torch.stack([dm.val_set[i][0] for i in range(len(dm.val_set))])
        x_tr = torch.stack([dm.train_set[i][0] for i in range(len(dm.train_set))])
        rows = [int(torch.cdist(v.flatten()[None], all_train.flatten(1)).argmin()) for v in x_val]
        tr = [int(torch.cdist(v.flatten()[None], all_train.flatten(1)).argmin()) for v in x_tr]
        assert sorted(rows + tr) == list(range(20))  # a partition of the training images
        for v, r in zip(x_val, rows, strict=True):
            assert torch.allclose(v, all_train[r], atol=1e-5)
        return rows

    assert val_rows(0) == val_rows(0)
    assert val_rows(0) != val_rows(1)


def test_training_augmentation(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    dm = CIFAR10DataModule(tmp_path, augment=True)
    dm.setup("fit")
    plain = CIFAR10DataModule(tmp_path, augment=False)
    plain.setup("fit")
    torch.manual_seed(0)
    augmented = torch.stack([dm.train_set[i][0] for i in range(len(dm.train_set))])
    reference = torch.stack([plain.train_set[i][0] for i in range(len(plain.train_set))])
    assert augmented.shape == reference.shape
    assert not torch.allclose(augmented, reference)


def test_root_may_be_the_batches_folder(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    dm = CIFAR10DataModule(tmp_path / "cifar-10-batches-py")
    dm.setup()
    assert len(dm.test_set) == TEST_IMAGES


def test_missing_data_message(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        CIFAR10DataModule(tmp_path / "nowhere").prepare_data()
    message = str(info.value)
    assert "CIFAR-10" in message and "does not exist" in message
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in message
    assert "cifar-10-batches-py/{data_batch_1 .. data_batch_5, test_batch" in message
    assert isinstance(info.value, FileNotFoundError)
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DatasetNotFoundError, match="lacks data_batch_3"):
        CIFAR10DataModule(tmp_path).setup()


def test_trainer_fit(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    dm = CIFAR10DataModule(tmp_path, batch_size=8)
    fit_and_test(dm, nn.Sequential(nn.Flatten(), nn.Linear(3072, 10)))
