"""SpeechCommandsDataModule on a tiny Speech Commands v0.02 folder written with soundfile."""

from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile
import torch
from torch import nn

from lightning_dnas.data import (
    KWS_LABELS,
    DatasetNotFoundError,
    MFCCParams,
    SpeechCommandsDataModule,
    speech_commands,
)
from tests.data.fitting import fit_and_test

WORDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
OTHERS = ["bed", "cat"]


def write_speech_commands(root: Path) -> None:
    """Per target word one clip in each split; per other word two training clips, one
    validation and one test clip; clips 0.5 s to 1.125 s long (padded / cropped); two 3 s
    background-noise recordings."""
    rng = np.random.default_rng(0)
    val, test = [], []
    for w, word in enumerate(WORDS + OTHERS):
        (root / word).mkdir(parents=True)
        names = ["a_nohash_0", "b_nohash_0", "c_nohash_0"]
        if word in OTHERS:
            names.append("d_nohash_0")
        for i, name in enumerate(names):
            length = 8000 + 2500 * ((w + i) % 5)
            t = np.arange(length) / 16000
            wave = 0.3 * np.sin(2 * np.pi * (200 + 50 * w) * t) + 0.01 * rng.standard_normal(length)
            soundfile.write(root / word / f"{name}.wav", wave.astype(np.float32), 16000)
        val.append(f"{word}/b_nohash_0.wav")
        test.append(f"{word}/c_nohash_0.wav")
    (root / "validation_list.txt").write_text("\n".join(val) + "\n")
    (root / "testing_list.txt").write_text("\n".join(test) + "\n")
    noise = root / "_background_noise_"
    noise.mkdir()
    for name in ("white_noise", "pink_noise"):
        wave = 0.5 * rng.standard_normal(48000)
        soundfile.write(noise / f"{name}.wav", wave.astype(np.float32), 16000, subtype="PCM_16")
    (noise / "README.md").write_text("noise")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("speech_commands")
    write_speech_commands(root)
    return root


def reference_mfcc(path: Path) -> np.ndarray:
    """Independent recomputation of one clip: soundfile, pad / crop to 16000, librosa MFCC
    with the SPEC parameters, transposed to [49, 10]."""
    wave, rate = soundfile.read(path, dtype="float32")
    assert rate == 16000
    wave = np.pad(wave, (0, max(0, 16000 - len(wave))))[:16000]
    mfcc = librosa.feature.mfcc(
        y=wave,
        sr=16000,
        n_mfcc=10,
        n_fft=512,
        win_length=480,
        hop_length=320,
        n_mels=40,
        fmin=20,
        fmax=4000,
        center=False,
    )
    return mfcc.T


def test_shapes_labels_and_sampling(data_dir: Path, tmp_path: Path) -> None:
    dm = SpeechCommandsDataModule(
        data_dir, batch_size=5, cache_dir=tmp_path, unknown_fraction=0.2, silence_fraction=0.3
    )
    dm.prepare_data()
    dm.setup("fit")
    assert dm.num_classes == 12 and dm.input_shape == (1, 49, 10)
    assert dm.example_input.shape == (1, 1, 49, 10)
    assert KWS_LABELS[:10] == tuple(WORDS) and KWS_LABELS[10:] == ("_silence_", "_unknown_")
    for ds in (dm.train_set, dm.val_set, dm.test_set):
        x, y = ds.tensors
        # 10 word clips, round(0.2 * 10) = 2 unknown clips, round(0.3 * 10) = 3 silence clips
        assert x.shape == (15, 1, 49, 10) and x.dtype == torch.float32 and y.dtype == torch.int64
        assert y.bincount(minlength=12).tolist() == [1] * 10 + [3, 2]
        assert torch.isfinite(x).all()
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (5, 1, 49, 10) and y.shape == (5,)


def test_unknown_fraction_none_keeps_all_other_words(data_dir: Path, tmp_path: Path) -> None:
    dm = SpeechCommandsDataModule(
        data_dir, cache_dir=tmp_path, unknown_fraction=None, silence_fraction=0.0
    )
    dm.setup()
    assert dm.train_set.tensors[1].bincount(minlength=12).tolist() == [1] * 10 + [0, 4]
    assert dm.val_set.tensors[1].bincount(minlength=12).tolist() == [1] * 10 + [0, 2]


def test_features_equal_an_independent_recomputation(data_dir: Path, tmp_path: Path) -> None:
    dm = SpeechCommandsDataModule(data_dir, cache_dir=tmp_path, silence_fraction=0.3)
    dm.setup()
    for split, name, ds in (("a", "a_nohash_0", dm.train_set), ("c", "c_nohash_0", dm.test_set)):
        x, y = ds.tensors
        for word in ("yes", "go"):  # a: 0.5 s (padded), 1.125 s (cropped); c: 0.81, 0.66 s
            (row,) = (y == KWS_LABELS.index(word)).nonzero().flatten().tolist()
            expected = reference_mfcc(data_dir / word / f"{name}.wav")
            assert np.allclose(x[row, 0].numpy(), expected, atol=1e-3), (split, word)


def test_silence_comes_from_the_noise_files(data_dir: Path, tmp_path: Path) -> None:
    dm = SpeechCommandsDataModule(data_dir, cache_dir=tmp_path, silence_fraction=0.3)
    dm.setup()
    x, y = dm.train_set.tensors
    silence = x[y == 10, 0]
    assert len(silence) == 3
    # a silence clip is a 1 s crop of noise: its MFCC differs from that of a zero clip
    zero = speech_commands.mfcc_features(np.zeros((1, 16000), np.float32), MFCCParams())[0]
    assert all(not np.allclose(s.numpy(), zero) for s in silence)


def test_cache_is_created_reused_and_keyed(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = SpeechCommandsDataModule(data_dir, cache_dir=tmp_path)
    first.setup()
    files = list(tmp_path.glob("kws_*.pt"))
    assert files == [first.cache_path()]

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("features recomputed although cached")

    monkeypatch.setattr(speech_commands, "mfcc_features", fail)
    again = SpeechCommandsDataModule(data_dir, cache_dir=tmp_path)
    again.prepare_data()
    again.setup()
    assert torch.equal(again.train_set.tensors[0], first.train_set.tensors[0])
    changed = SpeechCommandsDataModule(
        data_dir, cache_dir=tmp_path, features=MFCCParams(n_mfcc=13, fmax=7600.0)
    )
    with pytest.raises(AssertionError, match="recomputed"):
        changed.setup()  # a new feature parameter does not reuse the old cache
    monkeypatch.undo()
    changed.setup()
    assert changed.train_set.tensors[0].shape[1:] == (1, 49, 13)
    assert changed.input_shape == (1, 49, 13)
    assert len(list(tmp_path.glob("kws_*.pt"))) == 2
    other_sampling = SpeechCommandsDataModule(data_dir, cache_dir=tmp_path, sampling_seed=1)
    assert other_sampling.cache_path() != first.cache_path()


def test_default_cache_dir_is_inside_the_data(data_dir: Path) -> None:
    dm = SpeechCommandsDataModule(data_dir)
    assert dm.cache_path().parent == data_dir / ".lightning_dnas_cache"


def test_missing_data_message(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        SpeechCommandsDataModule(tmp_path / "nowhere").prepare_data()
    message = str(info.value)
    assert "Speech Commands v0.02" in message and "does not exist" in message
    assert "http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz" in message
    assert "validation_list.txt" in message and "_background_noise_" in message
    (tmp_path / "validation_list.txt").write_text("")
    (tmp_path / "testing_list.txt").write_text("")
    (tmp_path / "yes").mkdir()
    with pytest.raises(DatasetNotFoundError, match="lacks the word folders no, up"):
        SpeechCommandsDataModule(tmp_path).setup()


def test_missing_noise_folder(tmp_path: Path) -> None:
    write_speech_commands(tmp_path)
    for wav in (tmp_path / "_background_noise_").glob("*.wav"):
        wav.unlink()
    with pytest.raises(DatasetNotFoundError, match="no _background_noise_"):
        SpeechCommandsDataModule(tmp_path).setup()
    dm = SpeechCommandsDataModule(tmp_path, silence_fraction=0.0)
    dm.setup()
    assert 10 not in dm.train_set.tensors[1].tolist()


def test_trainer_fit(data_dir: Path, tmp_path: Path) -> None:
    dm = SpeechCommandsDataModule(data_dir, batch_size=4, cache_dir=tmp_path)
    fit_and_test(dm, nn.Sequential(nn.Flatten(), nn.Linear(490, 12)))
