"""A small temporal convolutional network for MNIST-1D, a seed for PIT searches."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lightning_dnas.nas.supernet import SuperNetModule


class CausalConvBlock(nn.Module):
    """Left zero-padding of ``(kernel_size - 1) * dilation`` samples, a bias-free Conv1d
    (stride 1, so the output has the input's length and each output sample sees only the
    present and past), BatchNorm1d and ReLU."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1
    ) -> None:
        super().__init__()
        self.pad = nn.ConstantPad1d(((kernel_size - 1) * dilation, 0), 0.0)
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, dilation=dilation, bias=False)
        self.bn = nn.BatchNorm1d(out_channels)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, in_channels, L) -> (N, out_channels, L)``."""
        return self.relu(self.bn(self.conv(self.pad(x))))


class Mnist1dTCN(nn.Module):
    """Causal temporal CNN for MNIST-1D signals (``(N, 1, 40)`` -> ``(N, num_classes)``).

    ``num_layers`` :class:`CausalConvBlock` s of ``channels`` output channels each (kernel
    ``kernel_size``, dilation ``dilations[i]``, stride 1), then a global average over time
    and a Linear classifier. The blocks are named ``blocks.0`` ... and their convolutions
    ``blocks.<i>.conv``.

    The defaults (4 layers, 32 channels, kernel 9, dilation 1: a receptive field of 33 of
    the 40 samples) deliberately over-provision width and kernel length, so that a PIT
    search has channels, taps and dilations to prune: 28,266 conv+linear parameters
    (28,522 with BatchNorm), 1,117,770 MACs per sample. Trained alone it reaches about
    95-97% test accuracy on 4,000-sample MNIST-1D. The network is torch.fx traceable.
    """

    def __init__(
        self,
        num_classes: int = 10,
        channels: int = 32,
        num_layers: int = 4,
        kernel_size: int = 9,
        dilations: Sequence[int] | None = None,
        in_channels: int = 1,
    ) -> None:
        super().__init__()
        dilations = [1] * num_layers if dilations is None else list(dilations)
        if len(dilations) != num_layers:
            raise ValueError(f"{len(dilations)} dilations given for {num_layers} layers")
        self.blocks = nn.Sequential(
            *(
                CausalConvBlock(in_channels if i == 0 else channels, channels, kernel_size, d)
                for i, d in enumerate(dilations)
            )
        )
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, in_channels, L) -> (N, num_classes)`` logits."""
        return self.classifier(self.blocks(x).mean(dim=-1))


class Mnist1dSuperNet(Mnist1dTCN):
    """:class:`Mnist1dTCN` whose blocks after the first are SuperNet choices: the seed of
    the embedded cascade (SuperNet search, then PIT search of widths, taps and dilations).

    Block 0 is the seed's first :class:`CausalConvBlock` (it maps 1 channel to
    ``channels``, so no identity fits there). Each later block ``i`` is a
    :class:`~lightning_dnas.SuperNetModule` with three candidates, each with its own
    BatchNorm and ReLU: ``"conv_k<kernel_size>"`` (the seed's block, dilation
    ``dilations[i]``), ``"conv_k<small_kernel>"`` (the same with a shorter kernel) and
    ``"identity"`` (the block dropped). With every choice on its first candidate the network
    is exactly ``Mnist1dTCN(num_classes, channels, num_layers, kernel_size, dilations)``
    (same module names, ``blocks.<i>.conv``), the reference the app compares against.
    """

    def __init__(
        self,
        num_classes: int = 10,
        channels: int = 32,
        num_layers: int = 4,
        kernel_size: int = 9,
        dilations: Sequence[int] | None = None,
        small_kernel: int = 3,
        in_channels: int = 1,
    ) -> None:
        super().__init__(num_classes, channels, num_layers, kernel_size, dilations, in_channels)
        for i in range(1, num_layers):
            seed_block = self.blocks[i]
            d = seed_block.conv.dilation[0]
            self.blocks[i] = SuperNetModule({
                f"conv_k{kernel_size}": seed_block,
                f"conv_k{small_kernel}": CausalConvBlock(channels, channels, small_kernel, d),
                "identity": nn.Identity(),
            })  # fmt: skip
