"""VWWDataModule on a few small PNG/JPEG files per class folder."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from lightning_dnas.data import DatasetNotFoundError, VWWDataModule
from tests.data.fitting import fit_and_test


def write_images(root: Path, counts: dict[str, int]) -> None:
    """``counts[folder]`` small random images per folder, PNG and JPEG, various sizes."""
    rng = np.random.default_rng(0)
    for folder, count in counts.items():
        (root / folder).mkdir(parents=True)
        for i in range(count):
            size = (20 + 3 * i, 16 + 2 * i)
            pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
            ext = "png" if i % 2 else "jpg"
            Image.fromarray(pixels).save(root / folder / f"img_{i:03d}.{ext}")
    (root / next(iter(counts)) / "notes.txt").write_text("not an image")


def reference(path: Path) -> torch.Tensor:
    """Independent decoding: PIL RGB, bilinear resize to 96x96, scaled to [0, 1]."""
    with Image.open(path) as img:
        array = np.asarray(img.convert("RGB").resize((96, 96), Image.BILINEAR), dtype=np.float32)
    return torch.from_numpy(array / 255.0).permute(2, 0, 1)


def test_shapes_labels_and_splits(tmp_path: Path) -> None:
    write_images(tmp_path, {"person": 6, "non_person": 4})
    dm = VWWDataModule(tmp_path, batch_size=4, seed=0)
    dm.prepare_data()
    dm.setup("fit")
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (7, 2, 1)
    assert dm.num_classes == 2 and dm.input_shape == (3, 96, 96)
    assert dm.example_input.shape == (1, 3, 96, 96)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 96, 96) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    samples = dm.train_set.samples + dm.val_set.samples + dm.test_set.samples
    assert len({p for p, _ in samples}) == 10  # a partition of the ten images
    for path, label in samples:
        assert label == (1 if path.parent.name == "person" else 0)
    for i, (path, label) in enumerate(dm.val_set.samples):  # not augmented
        image, target = dm.val_set[i]
        assert torch.allclose(image, reference(path), atol=1e-6) and int(target) == label


def test_split_is_seeded(tmp_path: Path) -> None:
    write_images(tmp_path, {"person": 6, "non_person": 6})

    def test_files(seed: int) -> list[Path]:
        dm = VWWDataModule(tmp_path, seed=seed)
        dm.setup()
        return [p for p, _ in dm.test_set.samples + dm.val_set.samples]

    assert test_files(3) == test_files(3)
    assert test_files(3) != test_files(4)


def test_custom_folder_mapping_and_parent_folder(tmp_path: Path) -> None:
    write_images(tmp_path / "vw_coco2014_96", {"yes": 3, "no": 3})
    dm = VWWDataModule(tmp_path, classes={"no": 0, "yes": 1}, image_size=32, augment=False)
    dm.setup()
    assert dm.input_shape == (3, 32, 32) and dm.test_set[0][0].shape == (3, 32, 32)
    for path, label in dm.train_set.samples:
        assert label == (path.parent.name == "yes")


def test_missing_data_message(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        VWWDataModule(tmp_path / "nowhere").prepare_data()
    message = str(info.value)
    assert "Visual Wake Words" in message and "does not exist" in message
    url = "https://www.silabs.com/public/files/github/machine_learning/benchmarks/datasets/"
    assert url + "vw_coco2014_96.tar.gz" in message
    assert "<data_dir>/person/" in message and "<data_dir>/non_person/" in message
    (tmp_path / "person").mkdir()
    with pytest.raises(DatasetNotFoundError, match="lacks the class folder non_person/"):
        VWWDataModule(tmp_path).setup()
    (tmp_path / "non_person").mkdir()
    with pytest.raises(DatasetNotFoundError, match="holds no images"):
        VWWDataModule(tmp_path).setup()


def test_trainer_fit(tmp_path: Path) -> None:
    write_images(tmp_path, {"person": 5, "non_person": 5})
    dm = VWWDataModule(tmp_path, batch_size=4, image_size=16)
    fit_and_test(dm, nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 2)))
