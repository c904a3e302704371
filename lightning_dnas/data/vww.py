"""Visual Wake Words (person / no person, 96x96 RGB) from a local folder of images."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ._base import BaseDataModule, DatasetNotFoundError, split_indices
from .cifar10 import image_transforms

VWW_URL = (
    "https://www.silabs.com/public/files/github/machine_learning/benchmarks/datasets/"
    "vw_coco2014_96.tar.gz"
)
VWW_NAME = "Visual Wake Words (MLPerf Tiny 96x96 COCO 2014 person/non-person, vw_coco2014_96)"
VWW_FOLDER = "vw_coco2014_96"
#: Default folder -> label mapping.
VWW_CLASSES = {"non_person": 0, "person": 1}
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".gif", ".tif", ".tiff", ".webp")


def _layout(classes: Mapping[str, int]) -> str:
    lines = [
        f"  <data_dir>/{name}/*.jpg|*.png   images of label {label}"
        for name, label in classes.items()
    ]
    lines.append(f"(the extracted {VWW_FOLDER}.tar.gz; <data_dir> may also be its parent)")
    return "\n".join(lines)


def scan_image_folders(data_dir: Path | str, classes: Mapping[str, int]) -> list[tuple[Path, int]]:
    """All images (by extension, sorted by path) in the class folders of ``data_dir`` (or of
    ``data_dir/vw_coco2014_96``) with their labels; raises :class:`DatasetNotFoundError` if
    a folder is missing or empty."""
    root = Path(data_dir)

    def missing(problem: str) -> DatasetNotFoundError:
        return DatasetNotFoundError(VWW_NAME, VWW_URL, root, problem, _layout(classes))

    if not root.is_dir():
        raise missing(f"data directory {root} does not exist")
    if not any((root / name).is_dir() for name in classes) and (root / VWW_FOLDER).is_dir():
        root = root / VWW_FOLDER  # the parent of the extracted archive's folder
    samples: list[tuple[Path, int]] = []
    for name, label in classes.items():
        folder = root / name
        if not folder.is_dir():
            raise missing(f"{root} lacks the class folder {name}/")
        files = sorted(
            p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
        )
        if not files:
            raise missing(f"{folder} holds no images")
        samples += [(p, label) for p in files]
    return samples


def load_image(path: Path, size: int) -> Tensor:
    """An image file as RGB uint8 ``[3, size, size]`` (resized with bilinear filtering,
    aspect ratio not kept)."""
    from PIL import Image

    with Image.open(path) as img:
        rgb = img.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
        array = np.asarray(rgb, dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


class ImageFileDataset(Dataset):
    """Images read from disk on access: ``(transform(image), label)``."""

    def __init__(
        self,
        samples: list[tuple[Path, int]],
        size: int,
        transform: Callable[[Tensor], Tensor],
    ) -> None:
        self.samples, self.size, self.transform = samples, size, transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        path, label = self.samples[index]
        image = load_image(path, self.size)
        return self.transform(image), torch.tensor(label, dtype=torch.int64)


class VWWDataModule(BaseDataModule):
    """Visual Wake Words (Chowdhery et al., 2019; COCO 2014 person / no person) read from
    ``data_dir/person/`` and ``data_dir/non_person/`` (or the folders of ``classes``, a
    mapping folder name -> label; default ``{"non_person": 0, "person": 1}``).

    Samples ``x`` are float32 ``[N, 3, 96, 96]`` in [0, 1] (images resized to
    ``image_size``, read from disk on access), labels int64. All images are split at random,
    deterministically for ``seed``: ``test_fraction`` (10%) test, ``val_fraction`` (20%)
    validation, the rest training. Training images are augmented as in the MLPerf Tiny VWW
    reference: rotation up to 10 degrees, shifts up to 5%, zoom 0.9-1.1, horizontal flip.
    """

    input_shape = (3, 96, 96)

    def __init__(
        self,
        data_dir: str | Path,
        batch_size: int = 32,
        val_fraction: float = 0.2,
        test_fraction: float = 0.1,
        classes: Mapping[str, int] | None = None,
        image_size: int = 96,
        augment: bool = True,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__(batch_size, num_workers, seed)
        self.data_dir = Path(data_dir)
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.classes = dict(classes if classes is not None else VWW_CLASSES)
        self.num_classes = len(set(self.classes.values()))
        self.image_size = image_size
        self.augment = augment
        self.input_shape = (3, image_size, image_size)

    def prepare_data(self) -> None:
        """Check that the class folders hold images (nothing is downloaded)."""
        scan_image_folders(self.data_dir, self.classes)

    def _make_splits(self) -> None:
        """List the images (once) and build the three splits."""
        samples = scan_image_folders(self.data_dir, self.classes)
        test, val, train = split_indices(
            len(samples), [self.test_fraction, self.val_fraction], self.seed
        )
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
        plain = image_transforms(mean, std, augment=False)
        train_tf = image_transforms(
            mean, std, self.augment, degrees=10.0, translate=0.05, scale=(0.9, 1.1), hflip=True
        )

        def subset(idx: Tensor, tf: Callable[[Tensor], Tensor]) -> ImageFileDataset:
            return ImageFileDataset([samples[i] for i in idx.tolist()], self.image_size, tf)

        self.train_set = subset(train, train_tf)
        self.val_set = subset(val, plain)
        self.test_set = subset(test, plain)
