"""Shared pieces of the data modules: the base class, the missing-data error, seeded splits
and the feature-cache helpers."""

from __future__ import annotations

import hashlib
import importlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset


class DatasetNotFoundError(FileNotFoundError):
    """A dataset directory is missing or lacks the expected files.

    Nothing is ever downloaded: the message names the dataset, where to get it and the
    folder layout the data module expects.
    """

    def __init__(self, name: str, url: str, root: Path | str, problem: str, layout: str) -> None:
        self.name, self.url, self.root = name, url, Path(root)
        super().__init__(
            f"{name}: {problem}.\n"
            f"Nothing is downloaded automatically. Download {name} from {url} and place it "
            f"so that {self.root} has this layout:\n{layout}"
        )


def split_indices(n: int, fractions: Sequence[float], seed: int) -> list[Tensor]:
    """Deterministic random partition of ``range(n)``: one index tensor per fraction in
    ``fractions`` (sizes rounded, each at least one when its fraction is positive), the rest
    last. The permutation depends only on ``n`` and ``seed``."""
    if any(f < 0 for f in fractions) or sum(fractions) >= 1.0:
        raise ValueError(f"split fractions must be >= 0 and sum to < 1, got {list(fractions)}")
    sizes = [max(1, round(n * f)) if f > 0 else 0 for f in fractions]
    if sum(sizes) >= n:
        raise ValueError(f"{n} samples are too few for the split fractions {list(fractions)}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    parts, start = [], 0
    for size in sizes:
        parts.append(order[start : start + size])
        start += size
    parts.append(order[start:])
    return parts


def cache_key(params: dict[str, Any]) -> str:
    """A short hash of the JSON form of ``params`` (feature parameters, sampling options and
    the list of source files): the cache file name changes whenever one of them does."""
    text = json.dumps(params, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def load_or_build(path: Path, build: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Load the cached dict at ``path``, or call ``build`` and save its result there first
    (written to a temporary file and renamed, so an interrupted build leaves no cache)."""
    if path.is_file():
        return torch.load(path, weights_only=True)
    data = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(data, tmp)
    tmp.replace(path)
    return data


def require(module: str, extra: str, needed_by: str) -> Any:
    """Import the optional dependency ``module``, or fail naming the extra that installs it
    (``pip install 'lightning_dnas[<extra>]'``) and what needs it."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(f"{needed_by} need {module.split('.')[0]}: pip install "
                                  f"'lightning_dnas[{extra}]'") from err  # fmt: skip


class BaseDataModule(L.LightningDataModule):
    """Base of the data modules: seeded loaders over ``train_set``/``val_set``/``test_set``.

    Subclasses set ``input_shape`` (one sample, no batch dimension) and fill the three
    datasets in ``_make_splits`` (called once by :meth:`setup`). ``example_input`` is a
    zero tensor shaped ``[1, *input_shape]``; the training loader reshuffles each epoch
    with a ``torch.Generator`` seeded by ``seed``, so the batch order is reproducible; the
    generator's state is part of the module's ``state_dict`` (hence of Lightning
    checkpoints), so a fit resumed from a checkpoint continues the same batch order.
    """

    input_shape: tuple[int, ...] = ()

    def __init__(self, batch_size: int, num_workers: int = 0, seed: int = 0) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None
        self._shuffle: torch.Generator | None = None
        self._shuffle_state: Tensor | None = None

    def state_dict(self) -> dict[str, Any]:
        """The training loader's shuffle generator state (empty before the first loader)."""
        return {} if self._shuffle is None else {"shuffle": self._shuffle.get_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Take a :meth:`state_dict` back: the next training loader continues that order
        (Lightning restores the data module before it asks for the loaders)."""
        self._shuffle_state = state_dict.get("shuffle")

    def setup(self, stage: str | None = None) -> None:
        """Form the three datasets (once: later calls, e.g. for ``test`` after ``fit``,
        keep them)."""
        if self.train_set is None:
            self._make_splits()

    def _make_splits(self) -> None:
        """Set ``train_set``, ``val_set`` and ``test_set`` (each subclass's own data)."""
        raise NotImplementedError

    @property
    def example_input(self) -> Tensor:
        """A zero batch of one sample, ``[1, *input_shape]`` (for tracing a model)."""
        return torch.zeros(1, *self.input_shape)

    def _loader(
        self, dataset: Dataset | None, name: str, shuffle: bool, batch_size: int | None = None
    ) -> DataLoader:
        if dataset is None:
            raise RuntimeError(f"no {name} set: call setup() first")
        generator = torch.Generator().manual_seed(self.seed) if shuffle else None
        return DataLoader(
            dataset,
            batch_size=batch_size or self.batch_size,
            shuffle=shuffle,
            generator=generator,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            collate_fn=getattr(dataset, "collate_fn", None),
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled (seeded) training batches ``(x, y)``."""
        loader = self._loader(self.train_set, "training", shuffle=True)
        self._shuffle = loader.generator
        if self._shuffle_state is not None and self._shuffle is not None:
            self._shuffle.set_state(self._shuffle_state)
            self._shuffle_state = None
        return loader

    def val_dataloader(self) -> DataLoader:
        """Validation batches ``(x, y)`` in a fixed order."""
        return self._loader(self.val_set, "validation", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        """Test batches ``(x, y)`` in a fixed order."""
        return self._loader(self.test_set, "test", shuffle=False)
