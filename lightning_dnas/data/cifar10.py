"""CIFAR-10 from a local copy of the official python pickle batches (never downloaded)."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ._base import BaseDataModule, DatasetNotFoundError, require, split_indices

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_FILE = "test_batch"
#: Per-channel mean and standard deviation of the CIFAR-10 training images (range [0, 1]).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
_LAYOUT = (
    f"  <root>/{CIFAR10_FOLDER}/{{data_batch_1 .. data_batch_5, test_batch, batches.meta}}\n"
    f"(the extracted cifar-10-python.tar.gz; <root> may also be the {CIFAR10_FOLDER} "
    "folder itself)"
)


def read_cifar10_batch(path: Path) -> tuple[Tensor, Tensor]:
    """Read one CIFAR-10 python batch file: images uint8 ``[N, 3, 32, 32]`` and labels
    int64 ``[N]`` (the file is a pickled dict with ``data`` ``[N, 3072]`` row-major
    R, G, B planes and ``labels``)."""
    with open(path, "rb") as f:
        batch = pickle.load(f, encoding="latin1")
    data = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
    labels = np.asarray(batch["labels"], dtype=np.int64)
    return torch.from_numpy(data.copy()), torch.from_numpy(labels)


def cifar10_folder(root: Path | str) -> Path:
    """The folder holding the batch files under ``root`` (``root/cifar-10-batches-py`` or
    ``root`` itself); raises :class:`DatasetNotFoundError` naming what is missing."""
    root = Path(root)
    for folder in (root / CIFAR10_FOLDER, root):
        if (folder / CIFAR10_TEST_FILE).is_file():
            missing = [n for n in CIFAR10_TRAIN_FILES if not (folder / n).is_file()]
            if missing:
                problem = f"{folder} lacks {', '.join(missing)}"
                raise DatasetNotFoundError("CIFAR-10", CIFAR10_URL, root, problem, _LAYOUT)
            return folder
    problem = (
        f"no CIFAR-10 batch files found in {root}"
        if root.is_dir()
        else f"data directory {root} does not exist"
    )
    raise DatasetNotFoundError("CIFAR-10", CIFAR10_URL, root, problem, _LAYOUT)


class ImageTensorDataset(Dataset):
    """uint8 images ``[N, C, H, W]`` and labels; ``transform`` maps one uint8 image to the
    float sample the model sees."""

    def __init__(self, images: Tensor, labels: Tensor, transform: Callable[[Tensor], Tensor]):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.transform(self.images[index]), self.labels[index]


def image_transforms(
    mean: tuple[float, ...],
    std: tuple[float, ...],
    augment: bool,
    degrees: float = 0.0,
    translate: float = 0.0,
    scale: tuple[float, float] | None = None,
    hflip: bool = False,
) -> Callable[[Tensor], Tensor]:
    """uint8 image -> float32 in [0, 1] -> per-channel normalisation; with ``augment``,
    first a random affine map (rotation up to ``degrees``, shift up to ``translate`` of
    the size, zoom ``scale``) and a random horizontal flip (``hflip``)."""
    v2 = require("torchvision.transforms.v2", "vision", "the CIFAR-10 and VWW data modules")

    steps: list[Callable[[Tensor], Tensor]] = []
    if augment:
        if degrees or translate or scale:
            t = (translate, translate) if translate else None
            steps.append(v2.RandomAffine(degrees=degrees, translate=t, scale=scale))
        if hflip:
            steps.append(v2.RandomHorizontalFlip())
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    return v2.Compose(steps)


class CIFAR10DataModule(BaseDataModule):
    """CIFAR-10 (Krizhevsky, 2009) read from ``data_dir`` (the extracted
    ``cifar-10-python.tar.gz``: ``data_dir/cifar-10-batches-py/data_batch_1..5``,
    ``test_batch``); nothing is downloaded.

    Samples ``x`` are float32 ``[N, 3, 32, 32]`` normalised with the CIFAR-10 channel mean
    and std; labels int64 in ``0..9``. ``val_fraction`` (20%) of the 50,000 training images,
    chosen at random deterministically for ``seed``, form the validation set; the test set
    is ``test_batch``. Training images are augmented (SPEC section 6): random rotation up to
    ``rotation`` degrees, translation up to ``translate`` of the size and a horizontal flip;
    validation and test images are not.

    The batch files are read directly (a pickled dict per file) rather than with
    ``torchvision.datasets.CIFAR10``, which also verifies the files' MD5 sums.
    """

    num_classes = 10
    input_shape = (3, 32, 32)

    def __init__(
        self,
        data_dir: str | Path,
        batch_size: int = 32,
        val_fraction: float = 0.2,
        augment: bool = True,
        rotation: float = 15.0,
        translate: float = 0.1,
        hflip: bool = True,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__(batch_size, num_workers, seed)
        self.data_dir = Path(data_dir)
        self.val_fraction = val_fraction
        self.augment, self.hflip = augment, hflip
        self.rotation, self.translate = rotation, translate
        self.classes: list[str] = []

    def prepare_data(self) -> None:
        """Check that the batch files are there (nothing is downloaded)."""
        cifar10_folder(self.data_dir)

    def _make_splits(self) -> None:
        """Read the batch files (once) and build the three splits."""
        folder = cifar10_folder(self.data_dir)
        parts = [read_cifar10_batch(folder / name) for name in CIFAR10_TRAIN_FILES]
        images = torch.cat([p[0] for p in parts])
        labels = torch.cat([p[1] for p in parts])
        test_images, test_labels = read_cifar10_batch(folder / CIFAR10_TEST_FILE)
        meta = folder / "batches.meta"
        if meta.is_file():
            with open(meta, "rb") as f:
                self.classes = list(pickle.load(f, encoding="latin1")["label_names"])
        val, train = split_indices(len(labels), [self.val_fraction], self.seed)
        plain = image_transforms(CIFAR10_MEAN, CIFAR10_STD, augment=False)
        train_tf = image_transforms(
            CIFAR10_MEAN,
            CIFAR10_STD,
            augment=self.augment,
            degrees=self.rotation,
            translate=self.translate,
            hflip=self.hflip,
        )
        self.train_set = ImageTensorDataset(images[train], labels[train], train_tf)
        self.val_set = ImageTensorDataset(images[val], labels[val], plain)
        self.test_set = ImageTensorDataset(test_images, test_labels, plain)
