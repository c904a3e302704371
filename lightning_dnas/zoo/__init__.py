"""MLPerf Tiny seed models (plain PyTorch, torch.fx traceable)."""

from lightning_dnas.zoo.autoencoder import AutoEncoder
from lightning_dnas.zoo.dscnn import DSCNN, DSCNNThesis
from lightning_dnas.zoo.mobilenetv1 import MobileNetV1
from lightning_dnas.zoo.resnet8 import ResNet8
from lightning_dnas.zoo.supernets import (
    DSCNNSuperNet,
    MobileNetV1SuperNet,
    ResNet8SuperNet,
    spec_reference_choice,
)
from lightning_dnas.zoo.tcresnet import TCResNet14

__all__ = [
    "DSCNN",
    "AutoEncoder",
    "DSCNNSuperNet",
    "DSCNNThesis",
    "MobileNetV1",
    "MobileNetV1SuperNet",
    "ResNet8",
    "ResNet8SuperNet",
    "TCResNet14",
    "spec_reference_choice",
]
