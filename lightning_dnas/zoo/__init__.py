"""Seed models (plain PyTorch, torch.fx traceable): MLPerf Tiny, their thesis supernets,
and the MNIST-1D seed of the main job."""

from lightning_dnas.zoo.autoencoder import AutoEncoder
from lightning_dnas.zoo.dscnn import DSCNN, DSCNNThesis
from lightning_dnas.zoo.mnist1d import Mnist1dSuperNet, Mnist1dTCN
from lightning_dnas.zoo.mobilenetv1 import MobileNetV1
from lightning_dnas.zoo.resnet8 import ResNet8
from lightning_dnas.zoo.supernet_blocks import spec_reference_choice
from lightning_dnas.zoo.supernets import DSCNNSuperNet, MobileNetV1SuperNet, ResNet8SuperNet
from lightning_dnas.zoo.tcresnet import TCResNet14

__all__ = [
    "DSCNN",
    "AutoEncoder",
    "DSCNNSuperNet",
    "DSCNNThesis",
    "Mnist1dSuperNet",
    "Mnist1dTCN",
    "MobileNetV1",
    "MobileNetV1SuperNet",
    "ResNet8",
    "ResNet8SuperNet",
    "TCResNet14",
    "spec_reference_choice",
]
