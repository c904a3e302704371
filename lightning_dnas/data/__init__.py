"""Data modules (LightningDataModules) of the benchmark datasets.

Nothing is ever downloaded: MNIST-1D and the scikit-learn digits are generated or bundled
locally; CIFAR-10, Speech Commands, Visual Wake Words and ToyCar are read from a folder the
user provides (a missing folder raises :class:`DatasetNotFoundError` saying what to get).
``DATAMODULES`` maps the short names used by the configuration to the classes.
"""

from ._base import BaseDataModule, DatasetNotFoundError
from .cifar10 import CIFAR10DataModule
from .digits import DigitsDataModule
from .mnist1d import MNIST1DDataModule
from .speech_commands import KWS_LABELS, KWS_WORDS, MFCCParams, SpeechCommandsDataModule
from .toycar import LogMelParams, ToyCarDataModule, anomaly_auc, clip_scores
from .vww import VWWDataModule

DATAMODULES: dict[str, type[BaseDataModule]] = {
    "mnist1d": MNIST1DDataModule,
    "digits": DigitsDataModule,
    "cifar10": CIFAR10DataModule,
    "kws": SpeechCommandsDataModule,
    "vww": VWWDataModule,
    "toycar": ToyCarDataModule,
}

__all__ = [
    "DATAMODULES",
    "KWS_LABELS",
    "KWS_WORDS",
    "BaseDataModule",
    "CIFAR10DataModule",
    "DatasetNotFoundError",
    "DigitsDataModule",
    "LogMelParams",
    "MFCCParams",
    "MNIST1DDataModule",
    "SpeechCommandsDataModule",
    "ToyCarDataModule",
    "VWWDataModule",
    "anomaly_auc",
    "clip_scores",
]
