"""ToyCarDataModule on short wav files in the DCASE 2020 task 2 layout; clip scores and AUC."""

import sys
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile
import torch
from torch import nn

from lightning_dnas.data import (
    DatasetNotFoundError,
    LogMelParams,
    ToyCarDataModule,
    anomaly_auc,
    clip_scores,
    toycar,
)
from lightning_dnas.data.toycar import ClipDataset
from tests.data.fitting import fit_and_test

SAMPLES = 8000  # 0.5 s: 1 + 8000 // 512 = 16 frames, 16 - 5 + 1 = 12 vectors per clip
VECTORS = 12


def write_toycar(root: Path, train: int = 5, normal: int = 2, anomaly: int = 2) -> None:
    rng = np.random.default_rng(0)

    def clip(path: Path, loud: float) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        wave = loud * rng.standard_normal(SAMPLES)
        soundfile.write(path, wave.astype(np.float32), 16000, subtype="PCM_16")

    for i in range(train):
        clip(root / "train" / f"normal_id_01_{i:08d}.wav", 0.05)
    for i in range(normal):
        clip(root / "test" / f"normal_id_01_{i:08d}.wav", 0.05)
    for i in range(anomaly):
        clip(root / "test" / f"anomaly_id_01_{i:08d}.wav", 0.4)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ToyCar")
    write_toycar(root)
    return root


def reference_vectors(path: Path) -> np.ndarray:
    """Independent recomputation: soundfile, librosa power mel (reference parameters,
    reflection-padded centred frames), 10 log10, five frames side by side."""
    wave, rate = soundfile.read(path, dtype="float32")
    mel = librosa.feature.melspectrogram(
        y=wave, sr=rate, n_fft=1024, hop_length=512, n_mels=128, power=2.0, pad_mode="reflect"
    )
    logmel = 10.0 * np.log10(mel + sys.float_info.epsilon)
    count = logmel.shape[1] - 4
    return np.stack([np.concatenate([logmel[:, t + k] for k in range(5)]) for t in range(count)])


def test_shapes_splits_and_features(data_dir: Path, tmp_path: Path) -> None:
    dm = ToyCarDataModule(data_dir, batch_size=7, cache_dir=tmp_path, test_clips=3)
    dm.prepare_data()
    dm.setup("fit")
    assert dm.input_dim == 640 and dm.input_shape == (640,)
    assert dm.example_input.shape == (1, 640)
    # 5 training clips: round(0.1 * 5) = 1 held out for validation
    assert (len(dm.train_set), len(dm.val_set)) == (4 * VECTORS, VECTORS)
    x, target = next(iter(dm.train_dataloader()))
    assert x.shape == (7, 640) and x.dtype == torch.float32 and torch.equal(x, target)
    # every training vector of one clip equals the independent recomputation
    clip_name = sorted((data_dir / "train").glob("*.wav"))[0]
    dm_all = ToyCarDataModule(data_dir, cache_dir=tmp_path, val_fraction=0.0)
    dm_all.setup()
    expected = reference_vectors(clip_name)
    assert expected.shape == (VECTORS, 640)
    got = np.stack([dm_all.train_set[i][0].numpy() for i in range(5 * VECTORS)])
    clips = got.reshape(5, VECTORS, 640)
    assert sum(np.allclose(c, expected, atol=1e-3) for c in clips) == 1
    # test batches: whole clips, normal (0) before anomaly (1) in file order
    batches = list(dm.test_dataloader())
    assert [len(b[1]) for b in batches] == [3, 1]
    x_test, y_test, lengths = (torch.cat(parts) for parts in zip(*batches, strict=True))
    assert x_test.shape == (4, VECTORS, 640) and y_test.tolist() == [0, 0, 1, 1]
    assert lengths.tolist() == [VECTORS] * 4
    anomaly = sorted((data_dir / "test").glob("anomaly_*.wav"))[1]
    assert np.allclose(x_test[3].numpy(), reference_vectors(anomaly), atol=1e-3)


def test_validation_clips_are_seeded(data_dir: Path, tmp_path: Path) -> None:
    def val_first(seed: int) -> torch.Tensor:
        dm = ToyCarDataModule(data_dir, cache_dir=tmp_path, val_fraction=0.4, seed=seed)
        dm.setup()
        return torch.stack([dm.val_set[i][0] for i in (0, VECTORS)])

    assert torch.equal(val_first(0), val_first(0))
    assert not torch.equal(val_first(0), val_first(2))


def test_clip_scores_on_a_padded_hand_made_batch() -> None:
    # two clips of 2-dim "vectors": lengths 2 and 3 (the first padded with a junk row)
    x = torch.tensor([[[1.0, 3.0], [2.0, 0.0], [9.0, 9.0]], [[0.0, 2.0], [1.0, 1.0], [4.0, 0.0]]])
    batch = (x, torch.tensor([0, 1]), torch.tensor([2, 3]))

    class Zero(nn.Module):
        def forward(self, v: torch.Tensor) -> torch.Tensor:
            return torch.zeros_like(v)

    scores = clip_scores(Zero(), batch)
    # per-vector MSE = mean of squares: clip 0: (10/2 + 4/2) / 2; clip 1: (4/2 + 2/2 + 16/2) / 3
    assert torch.allclose(scores, torch.tensor([3.5, 11.0 / 3.0]))
    assert torch.allclose(clip_scores(nn.Identity(), batch), torch.zeros(2))


def test_auc_of_a_trivial_scorer_on_a_hand_made_set() -> None:
    # four clips of one 1-dim vector; a zero "autoencoder" scores a clip by its mean square
    specs = [torch.tensor([[v]]) for v in (1.0, 2.0, 1.5, 3.0, 0.5)]
    labels = torch.tensor([0, 0, 1, 1, 1])
    ds = ClipDataset(specs, labels, frames=1)
    x, y, lengths = ClipDataset.collate_fn([ds[i] for i in range(len(ds))])
    scores = clip_scores(lambda v: torch.zeros_like(v), (x, y, lengths))
    assert scores.tolist() == [1.0, 4.0, 2.25, 9.0, 0.25]
    # anomaly > normal pairs: 2.25 > 1 (not > 4), 9 > both, 0.25 > neither: 3 of 6
    assert anomaly_auc(scores, y) == pytest.approx(3 / 6)
    assert anomaly_auc(torch.tensor([0.5, 0.5, 0.7]), torch.tensor([0, 1, 1])) == pytest.approx(
        0.75
    )  # a tie counts one half


def test_louder_anomalies_are_found(data_dir: Path, tmp_path: Path) -> None:
    dm = ToyCarDataModule(data_dir, cache_dir=tmp_path)
    dm.setup("test")
    mean = torch.stack([dm.train_set[i][0] for i in range(len(dm.train_set))]).mean(0)
    x, y, lengths = next(iter(dm.test_dataloader()))
    scores = clip_scores(lambda v: mean.expand_as(v), (x, y, lengths))
    assert anomaly_auc(scores, y) == 1.0


def test_cache_is_created_reused_and_keyed(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = ToyCarDataModule(data_dir, cache_dir=tmp_path)
    first.setup()
    assert list(tmp_path.glob("toycar_*.pt")) == [first.cache_path()]

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("features recomputed although cached")

    monkeypatch.setattr(toycar, "log_mel", fail)
    again = ToyCarDataModule(data_dir, cache_dir=tmp_path)
    again.prepare_data()
    again.setup()
    assert torch.equal(again.train_set[0][0], first.train_set[0][0])
    changed = ToyCarDataModule(data_dir, cache_dir=tmp_path, features=LogMelParams(n_mels=64))
    with pytest.raises(AssertionError, match="recomputed"):
        changed.setup()
    monkeypatch.undo()
    changed.setup()
    assert changed.input_dim == 320 and changed.train_set[0][0].shape == (320,)
    assert len(list(tmp_path.glob("toycar_*.pt"))) == 2


def test_missing_data_message(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        ToyCarDataModule(tmp_path / "nowhere").prepare_data()
    message = str(info.value)
    assert "DCASE 2020 task 2 ToyCar" in message and "does not exist" in message
    assert "https://zenodo.org/record/3678171" in message and "dev_data_ToyCar.zip" in message
    assert "<data_dir>/train/normal_*.wav" in message
    assert "<data_dir>/test/normal_*.wav, anomaly_*.wav" in message
    write_toycar(tmp_path, anomaly=0)
    with pytest.raises(DatasetNotFoundError, match="needs both normal_"):
        ToyCarDataModule(tmp_path).setup()


def test_trainer_fit(data_dir: Path, tmp_path: Path) -> None:
    dm = ToyCarDataModule(data_dir, batch_size=16, cache_dir=tmp_path)
    fit_and_test(dm, nn.Sequential(nn.Linear(640, 8), nn.ReLU(), nn.Linear(8, 640)), loss="mse")
