"""Keyword spotting on Google Speech Commands v0.02 (12 classes, MFCC features), read from a
local copy of the dataset; features are computed once with librosa and cached."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import TensorDataset

from ._base import BaseDataModule, DatasetNotFoundError, cache_key, load_or_build, require

SPEECH_COMMANDS_URL = "http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz"
#: The ten target words, in label order (labels 0..9).
KWS_WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
#: All twelve labels: the words, then silence (10) and unknown (11).
KWS_LABELS = (*KWS_WORDS, "_silence_", "_unknown_")
SILENCE_LABEL, UNKNOWN_LABEL = 10, 11
NOISE_FOLDER = "_background_noise_"
SPLITS = ("train", "val", "test")
#: Part of every background-noise file that silence clips of each split are cut from, so
#: that no noise sample appears in two splits.
NOISE_REGIONS = {"train": (0.0, 0.8), "val": (0.8, 0.9), "test": (0.9, 1.0)}
_LAYOUT = (
    "  <data_dir>/<word>/*.wav            one folder per word (yes, no, ..., go and the other\n"
    "                                     words), 16 kHz mono 1 s clips\n"
    f"  <data_dir>/{NOISE_FOLDER}/*.wav  long background-noise recordings\n"
    "  <data_dir>/validation_list.txt     relative paths (<word>/<file>.wav) of validation clips\n"
    "  <data_dir>/testing_list.txt        relative paths of test clips\n"
    "(the extracted speech_commands_v0.02.tar.gz)"
)


@dataclass(frozen=True)
class MFCCParams:
    """MFCC front end (SPEC section 6, MLPerf Tiny KWS): 1 s at 16 kHz, frames of
    ``win_length`` 480 samples (30 ms, Hann window, zero-padded to ``n_fft`` 512) every
    ``hop_length`` 320 samples (20 ms), no centring, 40 mel bands over 20-4000 Hz,
    10 coefficients (of the log power in dB, floored ``top_db`` below each clip's maximum):
    ``frames`` = 1 + (16000 - 512) // 320 = 49."""

    sample_rate: int = 16000
    clip_samples: int = 16000
    n_mfcc: int = 10
    n_fft: int = 512
    win_length: int = 480
    hop_length: int = 320
    n_mels: int = 40
    fmin: float = 20.0
    fmax: float = 4000.0
    top_db: float = 80.0

    @property
    def frames(self) -> int:
        """Number of MFCC frames per clip (no centring)."""
        return 1 + (self.clip_samples - self.n_fft) // self.hop_length


def mfcc_features(waveforms: np.ndarray, params: MFCCParams) -> np.ndarray:
    """MFCCs of clips ``waveforms`` ``[B, clip_samples]`` as float32 ``[B, frames, n_mfcc]``.

    Per clip, exactly ``librosa.feature.mfcc`` with these parameters: power mel spectrogram
    (Hann window, Slaney mel filters), ``power_to_db`` (ref 1, ``top_db`` below the clip's
    maximum), DCT-II with orthonormal scaling, first ``n_mfcc`` coefficients. The mel
    spectrograms are computed for the whole batch at once; the dB floor is applied clip by
    clip (``librosa.feature.mfcc`` on a batch would take the maximum over the batch).
    """
    import scipy.fft

    librosa = require("librosa", "audio", "the KWS and ToyCar features")

    mel = librosa.feature.melspectrogram(
        y=np.asarray(waveforms, dtype=np.float32),
        sr=params.sample_rate,
        n_fft=params.n_fft,
        win_length=params.win_length,
        hop_length=params.hop_length,
        center=False,
        power=2.0,
        n_mels=params.n_mels,
        fmin=params.fmin,
        fmax=params.fmax,
    )
    db = np.stack([librosa.power_to_db(m, top_db=params.top_db) for m in mel])
    mfcc = scipy.fft.dct(db, axis=-2, type=2, norm="ortho")[:, : params.n_mfcc, :]
    return np.ascontiguousarray(np.swapaxes(mfcc, -1, -2), dtype=np.float32)


def read_wav(path: Path, sample_rate: int) -> np.ndarray:
    """Read a wav file with soundfile as float32 mono (channels averaged) in [-1, 1];
    raises ``ValueError`` if its sample rate is not ``sample_rate`` (nothing is
    resampled)."""
    soundfile = require("soundfile", "audio", "the KWS and ToyCar wav readers")

    data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    if rate != sample_rate:
        raise ValueError(f"{path}: sample rate {rate} Hz, expected {sample_rate} Hz")
    return data.mean(axis=1)


def fit_length(wave: np.ndarray, length: int) -> np.ndarray:
    """Crop ``wave`` to its first ``length`` samples or pad it with zeros at the end."""
    if len(wave) >= length:
        return wave[:length]
    return np.pad(wave, (0, length - len(wave)))


def _read_list(path: Path) -> set[str]:
    return {line.strip() for line in path.read_text().splitlines() if line.strip()}


def scan_speech_commands(data_dir: Path | str) -> dict[str, Any]:
    """Index a Speech Commands folder: ``{"clips": {split: [(relative path, word)]},
    "noise": [noise wav paths]}``, the split of a clip given by ``validation_list.txt`` and
    ``testing_list.txt`` (every other clip is a training clip). Raises
    :class:`DatasetNotFoundError` if the folder, a list file or a target word is missing."""
    root = Path(data_dir)

    def missing(problem: str) -> DatasetNotFoundError:
        return DatasetNotFoundError(
            "Speech Commands v0.02", SPEECH_COMMANDS_URL, root, problem, _LAYOUT
        )

    if not root.is_dir():
        raise missing(f"data directory {root} does not exist")
    for name in ("validation_list.txt", "testing_list.txt"):
        if not (root / name).is_file():
            raise missing(f"{root} lacks {name}")
    words = sorted(
        p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))
    )
    absent = [w for w in KWS_WORDS if w not in words]
    if absent:
        raise missing(f"{root} lacks the word folders {', '.join(absent)}")
    val_list = _read_list(root / "validation_list.txt")
    test_list = _read_list(root / "testing_list.txt")
    clips: dict[str, list[tuple[str, str]]] = {s: [] for s in SPLITS}
    for word in words:
        for wav in sorted((root / word).glob("*.wav")):
            rel = f"{word}/{wav.name}"
            split = "val" if rel in val_list else "test" if rel in test_list else "train"
            clips[split].append((rel, word))
    noise = sorted((root / NOISE_FOLDER).glob("*.wav")) if (root / NOISE_FOLDER).is_dir() else []
    return {"clips": clips, "noise": noise}


class SpeechCommandsDataModule(BaseDataModule):
    """Keyword spotting, Speech Commands v0.02 (Warden, 2018), 12 classes as in the MLPerf
    Tiny KWS benchmark: the ten words :data:`KWS_WORDS` (labels 0..9), silence (10) and
    unknown (11).

    Samples ``x`` are float32 ``[N, 1, 49, 10]`` MFCCs (:class:`MFCCParams`), labels int64.
    Splits follow the dataset's ``validation_list.txt`` / ``testing_list.txt``. Per split:

    * every clip of a target word is used (clips padded with zeros or cropped to 1 s);
    * unknown: ``unknown_fraction`` x (number of target-word clips of the split) clips drawn
      without replacement from the clips of all other words (all of them if
      ``unknown_fraction`` is None); default 0.1, as TensorFlow's speech_commands
      ``unknown_percentage=10``;
    * silence: ``silence_fraction`` x (number of target-word clips) 1 s crops of the
      ``_background_noise_`` recordings at a random offset, scaled by a gain uniform in
      ``[0, silence_gain]``; default 0.1 and gain 1.0. Train / validation / test silence
      is cut from the first 80% / next 10% / last 10% of each recording.

    The draws are fixed by ``sampling_seed`` (the same every epoch); ``seed`` seeds the
    shuffling of the training batches. Features are computed once and cached in
    ``cache_dir`` (default ``<data_dir>/.lightning_dnas_cache``) in a file named by a hash of
    the feature parameters, the sampling options and the list of clips, so a change of any
    of them builds a new cache. No waveform augmentation (time shift, background mixing) is
    applied.
    """

    num_classes = 12
    label_names = KWS_LABELS

    def __init__(
        self,
        data_dir: str | Path,
        batch_size: int = 100,
        cache_dir: str | Path | None = None,
        unknown_fraction: float | None = 0.1,
        silence_fraction: float = 0.1,
        silence_gain: float = 1.0,
        features: MFCCParams | None = None,
        sampling_seed: int = 0,
        seed: int = 0,
        num_workers: int = 0,
        chunk_size: int = 512,
    ) -> None:
        super().__init__(batch_size, num_workers, seed)
        self.data_dir = Path(data_dir)
        self.cache_dir = Path(cache_dir) if cache_dir else self.data_dir / ".lightning_dnas_cache"
        self.unknown_fraction = unknown_fraction
        self.silence_fraction = silence_fraction
        self.silence_gain = silence_gain
        self.features = features or MFCCParams()
        self.sampling_seed = sampling_seed
        self.chunk_size = chunk_size
        self.input_shape = (1, self.features.frames, self.features.n_mfcc)

    def cache_path(self, index: dict[str, Any] | None = None) -> Path:
        """The cache file for the current options and the clips found in ``data_dir``."""
        index = index or scan_speech_commands(self.data_dir)
        listing = "\n".join(
            [f"{s}:{rel}" for s in SPLITS for rel, _ in index["clips"][s]]
            + [f"noise:{p.name}:{p.stat().st_size}" for p in index["noise"]]
        )
        key = cache_key(
            {
                "features": asdict(self.features),
                "labels": KWS_LABELS,
                "unknown_fraction": self.unknown_fraction,
                "silence_fraction": self.silence_fraction,
                "silence_gain": self.silence_gain,
                "sampling_seed": self.sampling_seed,
                "files": hashlib.sha1(listing.encode()).hexdigest(),
            }
        )
        return self.cache_dir / f"kws_{key}.pt"

    def prepare_data(self) -> None:
        """Compute and cache the features if no cache matches the options."""
        self._load()

    def _make_splits(self) -> None:
        """Load (building if needed) the cached features and form the three splits."""
        data = self._load()
        self.train_set, self.val_set, self.test_set = (
            TensorDataset(data[f"x_{s}"], data[f"y_{s}"]) for s in SPLITS
        )

    def _load(self) -> dict[str, Any]:
        index = scan_speech_commands(self.data_dir)
        return load_or_build(self.cache_path(index), lambda: self._build(index))

    def _build(self, index: dict[str, Any]) -> dict[str, Any]:
        if self.silence_fraction > 0 and not index["noise"]:
            raise DatasetNotFoundError(
                "Speech Commands v0.02",
                SPEECH_COMMANDS_URL,
                self.data_dir,
                f"{self.data_dir} has no {NOISE_FOLDER}/*.wav for the silence class",
                _LAYOUT,
            )
        p = self.features
        noise = [read_wav(path, p.sample_rate) for path in index["noise"]]
        out: dict[str, Any] = {}
        for i, split in enumerate(SPLITS):
            rng = np.random.default_rng([self.sampling_seed, i])
            known = [(r, KWS_WORDS.index(w)) for r, w in index["clips"][split] if w in KWS_WORDS]
            others = [r for r, w in index["clips"][split] if w not in KWS_WORDS]
            if self.unknown_fraction is None:
                n_unknown = len(others)
            else:
                n_unknown = min(len(others), round(self.unknown_fraction * len(known)))
            picked = rng.choice(len(others), size=n_unknown, replace=False) if others else []
            clips = known + [(others[j], UNKNOWN_LABEL) for j in sorted(picked)]
            n_silence = round(self.silence_fraction * len(known)) if noise else 0
            silence = self._silence(noise, n_silence, NOISE_REGIONS[split], rng)
            x = np.concatenate(
                [self._features_of_files([r for r, _ in clips]), self._features_of(silence)]
            )
            labels = [lab for _, lab in clips] + [SILENCE_LABEL] * n_silence
            out[f"x_{split}"] = torch.from_numpy(x.astype(np.float32)).unsqueeze(1)
            out[f"y_{split}"] = torch.tensor(labels, dtype=torch.int64)
        return out

    def _features_of_files(self, rels: list[str]) -> np.ndarray:
        p = self.features
        waves = (
            fit_length(read_wav(self.data_dir / r, p.sample_rate), p.clip_samples) for r in rels
        )
        return self._features_of(waves)

    def _features_of(self, waves: Iterable[np.ndarray]) -> np.ndarray:
        """MFCCs of 1 s clips, computed ``chunk_size`` clips at a time."""
        p = self.features
        chunks = [np.zeros((0, p.frames, p.n_mfcc), dtype=np.float32)]
        batch: list[np.ndarray] = []
        for wave in waves:
            batch.append(wave)
            if len(batch) == self.chunk_size:
                chunks.append(mfcc_features(np.stack(batch), p))
                batch = []
        if batch:
            chunks.append(mfcc_features(np.stack(batch), p))
        return np.concatenate(chunks)

    def _silence(
        self,
        noise: list[np.ndarray],
        count: int,
        region: tuple[float, float],
        rng: np.random.Generator,
    ) -> np.ndarray:
        """``count`` 1 s clips cut from ``region`` (fractions of each recording's length)
        of random noise recordings, each scaled by a gain uniform in [0, silence_gain]."""
        length = self.features.clip_samples
        clips = np.zeros((count, length), dtype=np.float32)
        for k in range(count):
            wave = noise[rng.integers(len(noise))]
            lo, hi = int(region[0] * len(wave)), int(region[1] * len(wave))
            start = lo + int(rng.integers(max(1, hi - lo - length + 1)))
            segment = wave[start : min(hi, start + length)]
            clips[k, : len(segment)] = segment * rng.uniform(0.0, self.silence_gain)
        return clips
