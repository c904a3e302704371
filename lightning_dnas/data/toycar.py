"""Anomaly detection on DCASE 2020 task 2 ToyCar (MLPerf Tiny AD): log-mel frame vectors
for an autoencoder, per-clip anomaly scores and their AUC."""

from __future__ import annotations

import hashlib
import sys
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import asdict, dataclass
from itertools import accumulate
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ._base import (
    BaseDataModule,
    DatasetNotFoundError,
    cache_key,
    load_or_build,
    require,
    split_indices,
)
from .speech_commands import read_wav

TOYCAR_URL = (
    "https://zenodo.org/record/3678171 (dev_data_ToyCar.zip; optionally add the normal clips "
    "of eval_data_train_ToyCar.zip from https://zenodo.org/record/3727685 to train/)"
)
TOYCAR_NAME = "DCASE 2020 task 2 ToyCar (ToyADMOS)"
_LAYOUT = (
    "  <data_dir>/train/normal_*.wav                normal training clips (16 kHz mono)\n"
    "  <data_dir>/test/normal_*.wav, anomaly_*.wav  test clips, label from the name\n"
    "(the ToyCar folder of the extracted dev_data_ToyCar.zip, e.g. dev_data/ToyCar)"
)


@dataclass(frozen=True)
class LogMelParams:
    """Front end of the MLPerf Tiny AD reference (the DCASE 2020 task 2 baseline): power
    (``power`` 2) mel spectrogram, ``n_fft`` 1024, ``hop_length`` 512, Hann window of
    ``n_fft``, centred frames with reflection padding, 128 Slaney mel bands over 0..sr/2,
    in dB (``20 / power * log10(mel + eps)`` = ``10 log10`` for power 2); ``frames``
    consecutive frames concatenated, oldest first, into one ``n_mels * frames`` = 640
    vector. A 10 s clip at 16 kHz has 313 frames, hence 309 vectors."""

    sample_rate: int = 16000
    n_fft: int = 1024
    hop_length: int = 512
    n_mels: int = 128
    power: float = 2.0
    frames: int = 5

    @property
    def dim(self) -> int:
        """Length of one frame vector, ``n_mels * frames``."""
        return self.n_mels * self.frames


def log_mel(wave: np.ndarray, params: LogMelParams) -> np.ndarray:
    """Log-mel spectrogram of one clip, float32 ``[n_mels, T]`` (``T = 1 + len // hop``)."""
    librosa = require("librosa", "audio", "the KWS and ToyCar features")

    mel = librosa.feature.melspectrogram(
        y=np.asarray(wave, dtype=np.float32),
        sr=params.sample_rate,
        n_fft=params.n_fft,
        hop_length=params.hop_length,
        n_mels=params.n_mels,
        power=params.power,
        center=True,
        pad_mode="reflect",
    )
    return (20.0 / params.power * np.log10(mel + sys.float_info.epsilon)).astype(np.float32)


def frame_vectors(spec: Tensor, frames: int) -> Tensor:
    """Concatenate ``frames`` consecutive columns of a ``[n_mels, T]`` spectrogram:
    ``[T - frames + 1, n_mels * frames]``, row ``t`` = columns ``t .. t+frames-1`` one after
    another (elements ``k*n_mels .. (k+1)*n_mels - 1`` hold column ``t + k``)."""
    count = spec.shape[1] - frames + 1
    if count < 1:
        raise ValueError(f"a clip of {spec.shape[1]} frames is shorter than {frames} frames")
    return torch.cat([spec[:, k : k + count] for k in range(frames)], dim=0).T.contiguous()


class FrameVectorDataset(Dataset):
    """All frame vectors of a list of clips' spectrograms, as autoencoder pairs ``(v, v)``
    with ``v`` float32 ``[n_mels * frames]`` (built on access, the spectrograms are kept)."""

    def __init__(self, specs: list[Tensor], frames: int) -> None:
        self.specs, self.frames = specs, frames
        counts = [s.shape[1] - frames + 1 for s in specs]
        self.starts = [0, *accumulate(counts)]

    def __len__(self) -> int:
        return self.starts[-1]

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        clip = bisect_right(self.starts, index) - 1
        t = index - self.starts[clip]
        v = self.specs[clip][:, t : t + self.frames].T.reshape(-1)
        return v, v


class ClipDataset(Dataset):
    """One item per clip: ``(vectors [V, n_mels * frames], label)`` (0 normal, 1 anomaly).
    Its ``collate_fn`` pads a batch to ``(x [B, V_max, D], y [B], lengths [B])`` with zeros
    (all ToyCar clips have the same length, so normally nothing is padded)."""

    def __init__(self, specs: list[Tensor], labels: Tensor, frames: int) -> None:
        self.specs, self.labels, self.frames = specs, labels, frames

    def __len__(self) -> int:
        return len(self.specs)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return frame_vectors(self.specs[index], self.frames), self.labels[index]

    @staticmethod
    def collate_fn(items: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor, Tensor]:
        """Stack clips of possibly different lengths, zero-padded, with their lengths."""
        lengths = torch.tensor([len(v) for v, _ in items], dtype=torch.int64)
        x = torch.zeros(len(items), int(lengths.max()), items[0][0].shape[1])
        for i, (v, _) in enumerate(items):
            x[i, : len(v)] = v
        return x, torch.stack([y for _, y in items]), lengths


def clip_scores(model: Callable[[Tensor], Tensor], batch: tuple[Tensor, ...]) -> Tensor:
    """Anomaly score of each clip of a :class:`ClipDataset` batch ``(x, y, lengths)``: the
    mean over the clip's frame vectors of the reconstruction MSE (mean over the
    ``D`` elements) of ``model`` (a ``[M, D] -> [M, D]`` autoencoder), as in the reference's
    test script. Returns float ``[B]``. The model runs as given (call it in eval mode and
    under ``torch.no_grad()`` for evaluation)."""
    x, lengths = batch[0], batch[2]
    b, v, d = x.shape
    err = ((model(x.reshape(b * v, d)).reshape(b, v, d) - x) ** 2).mean(dim=2)
    valid = torch.arange(v, device=x.device)[None, :] < lengths.to(x.device)[:, None]
    return (err * valid).sum(dim=1) / lengths.to(err)


def anomaly_auc(scores: Tensor, labels: Tensor) -> float:
    """ROC AUC of per-clip anomaly ``scores`` for ``labels`` (1 anomaly, 0 normal), with
    torchmetrics' ``BinaryAUROC`` (ties count one half)."""
    from torchmetrics.classification import BinaryAUROC

    metric = BinaryAUROC()
    metric.update(scores.detach().float().cpu(), labels.detach().long().cpu())
    return float(metric.compute())


def scan_toycar(data_dir: Path | str) -> dict[str, list[Path]]:
    """The clips of a ToyCar folder: ``{"train": normal training clips, "test": test
    clips}`` sorted by name; raises :class:`DatasetNotFoundError` when a part is missing."""
    root = Path(data_dir)

    def missing(problem: str) -> DatasetNotFoundError:
        return DatasetNotFoundError(TOYCAR_NAME, TOYCAR_URL, root, problem, _LAYOUT)

    if not root.is_dir():
        raise missing(f"data directory {root} does not exist")
    train = sorted((root / "train").glob("normal_*.wav"))
    if not train:
        raise missing(f"{root / 'train'} holds no normal_*.wav clips")
    normal = sorted((root / "test").glob("normal_*.wav"))
    anomaly = sorted((root / "test").glob("anomaly_*.wav"))
    if not normal or not anomaly:
        raise missing(f"{root / 'test'} needs both normal_*.wav and anomaly_*.wav clips")
    return {"train": train, "test": normal + anomaly}


class ToyCarDataModule(BaseDataModule):
    """DCASE 2020 task 2 ToyCar, the MLPerf Tiny anomaly-detection task, read from
    ``data_dir/train/normal_*.wav`` and ``data_dir/test/{normal,anomaly}_*.wav``.

    Training and validation items are autoencoder pairs ``(x, x)``, ``x`` float32 ``[640]``
    (``input_dim``; :class:`LogMelParams`): every frame vector of the normal training clips,
    ``val_fraction`` (10%, the reference's validation split) of the clips, chosen at random
    deterministically for ``seed``, held out for validation. Test batches are whole clips
    ``(x [B, V, 640], y [B], lengths [B])`` (``V`` = 309 for 10 s clips), ``y`` 1 for
    ``anomaly_*`` and 0 for ``normal_*``; score them with :func:`clip_scores` and
    :func:`anomaly_auc`. ``test_clips`` clips form one test batch.

    Log-mel spectrograms are computed once with librosa and cached in ``cache_dir``
    (default ``<data_dir>/.lightning_dnas_cache``) in a file keyed by the feature parameters
    and the list of clips.
    """

    num_classes = None

    def __init__(
        self,
        data_dir: str | Path,
        batch_size: int = 512,
        val_fraction: float = 0.1,
        test_clips: int = 8,
        cache_dir: str | Path | None = None,
        features: LogMelParams | None = None,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__(batch_size, num_workers, seed)
        self.data_dir = Path(data_dir)
        self.cache_dir = Path(cache_dir) if cache_dir else self.data_dir / ".lightning_dnas_cache"
        self.val_fraction = val_fraction
        self.test_clips = test_clips
        self.features = features or LogMelParams()
        self.input_dim = self.features.dim
        self.input_shape = (self.input_dim,)

    def cache_path(self, files: dict[str, list[Path]] | None = None) -> Path:
        """The cache file for the feature parameters and the clips in ``data_dir``."""
        files = files or scan_toycar(self.data_dir)
        listing = "\n".join(
            f"{split}:{p.name}:{p.stat().st_size}"
            for split in ("train", "test")
            for p in files[split]
        )
        key = cache_key(
            {"features": asdict(self.features), "files": hashlib.sha1(listing.encode()).hexdigest()}
        )
        return self.cache_dir / f"toycar_{key}.pt"

    def prepare_data(self) -> None:
        """Compute and cache the spectrograms if no cache matches."""
        self._load()

    def _make_splits(self) -> None:
        """Load (building if needed) the cached spectrograms and form the splits."""
        data = self._load()
        frames = self.features.frames
        val, train = split_indices(len(data["train"]), [self.val_fraction], self.seed)
        self.train_set = FrameVectorDataset([data["train"][i] for i in train.tolist()], frames)
        self.val_set = FrameVectorDataset([data["train"][i] for i in val.tolist()], frames)
        self.test_set = ClipDataset(data["test"], data["test_labels"], frames)

    def test_dataloader(self) -> torch.utils.data.DataLoader:
        """Test batches of ``test_clips`` whole clips ``(x, y, lengths)``, in file order."""
        return self._loader(self.test_set, "test", shuffle=False, batch_size=self.test_clips)

    def _load(self) -> dict[str, Any]:
        files = scan_toycar(self.data_dir)
        return load_or_build(self.cache_path(files), lambda: self._build(files))

    def _build(self, files: dict[str, list[Path]]) -> dict[str, Any]:
        p = self.features

        def spec(path: Path) -> Tensor:
            return torch.from_numpy(log_mel(read_wav(path, p.sample_rate), p))

        labels = [int(path.name.startswith("anomaly_")) for path in files["test"]]
        return {
            "train": [spec(path) for path in files["train"]],
            "test": [spec(path) for path in files["test"]],
            "test_labels": torch.tensor(labels, dtype=torch.int64),
            "train_files": [path.name for path in files["train"]],
            "test_files": [path.name for path in files["test"]],
        }
