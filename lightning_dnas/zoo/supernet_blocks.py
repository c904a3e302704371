"""The candidate blocks of the zoo's SuperNets and the standard choice built from them
(thesis chapter 5): conv3x3 / conv5x5 / depthwise-separable / identity, each candidate with
its own BatchNorm (never shared: thesis 5.1.1)."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from lightning_dnas.nas.supernet import SuperNetModule

__all__ = ["CANDIDATE_NAMES", "ConvBNAct", "DepthwiseSeparable", "spec_reference_choice",
           "standard_choice"]  # fmt: skip

CANDIDATE_NAMES: tuple[str, ...] = ("conv3x3", "conv5x5", "dw_sep", "identity")
"""Names of the candidates of :func:`standard_choice`, in order (``identity`` optional)."""


class ConvBNAct(nn.Sequential):
    """``conv`` (padding ``kernel_size // 2``) -> ``bn`` (BatchNorm2d) -> ``relu`` (optional).

    The submodule names (``conv``, ``bn``, ``relu``) match the zoo's ``ConvBNReLU`` blocks,
    so their state dicts are interchangeable when ``bias`` and ``relu`` agree.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: square kernel size (odd).
        stride: stride of the convolution.
        groups: convolution groups (``in_channels`` for a depthwise convolution).
        bias: whether the convolution has a bias.
        relu: whether a ReLU follows the BatchNorm.
        bn_momentum: PyTorch momentum of the BatchNorm.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        groups: int = 1,
        bias: bool = True,
        relu: bool = True,
        bn_momentum: float = 0.1,
    ) -> None:
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        layers["conv"] = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=kernel_size // 2,
            groups=groups,
            bias=bias,
        )
        layers["bn"] = nn.BatchNorm2d(out_channels, momentum=bn_momentum)
        if relu:
            layers["relu"] = nn.ReLU()
        super().__init__(layers)


class DepthwiseSeparable(nn.Sequential):
    """``depthwise``: 3x3 depthwise (stride ``stride``) + BN + ReLU; ``pointwise``: 1x1 + BN
    (+ ReLU when ``relu``).

    With ``bias=False`` and ``relu=True`` its state dict matches the zoo MobileNetV1
    ``DepthwiseSeparableBlock``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        bias: bool = True,
        relu: bool = True,
        bn_momentum: float = 0.1,
    ) -> None:
        super().__init__(
            OrderedDict(
                depthwise=ConvBNAct(
                    in_channels,
                    in_channels,
                    3,
                    stride=stride,
                    groups=in_channels,
                    bias=bias,
                    relu=True,
                    bn_momentum=bn_momentum,
                ),
                pointwise=ConvBNAct(
                    in_channels, out_channels, 1, bias=bias, relu=relu, bn_momentum=bn_momentum
                ),
            )
        )


def standard_choice(
    in_channels: int,
    out_channels: int,
    stride: int = 1,
    *,
    bias: bool = True,
    relu: bool = True,
    identity: bool | None = None,
    bn_momentum: float = 0.1,
) -> SuperNetModule:
    """The thesis' choice: ``{"conv3x3", "conv5x5", "dw_sep"[, "identity"]}``.

    ``conv3x3``/``conv5x5`` are :class:`ConvBNAct`, ``dw_sep`` is :class:`DepthwiseSeparable`,
    all with ``bias``, their own BatchNorm and, when ``relu``, a final ReLU. ``identity``
    (``None``, the default) adds ``nn.Identity()`` exactly when ``in_channels ==
    out_channels`` and ``stride == 1``; ``False`` leaves it out; ``True`` demands it
    (``ValueError`` where the shapes would not match).
    """
    fits = in_channels == out_channels and stride == 1
    if identity is None:
        identity = fits
    elif identity and not fits:
        raise ValueError(
            f"an identity candidate needs in == out channels and stride 1, got "
            f"{in_channels}->{out_channels} stride {stride}"
        )
    candidates: dict[str, nn.Module] = {
        "conv3x3": ConvBNAct(
            in_channels, out_channels, 3, stride, bias=bias, relu=relu, bn_momentum=bn_momentum
        ),
        "conv5x5": ConvBNAct(
            in_channels, out_channels, 5, stride, bias=bias, relu=relu, bn_momentum=bn_momentum
        ),
        "dw_sep": DepthwiseSeparable(
            in_channels, out_channels, stride, bias=bias, relu=relu, bn_momentum=bn_momentum
        ),
    }
    if identity:
        candidates["identity"] = nn.Identity()
    return SuperNetModule(candidates)


def spec_reference_choice() -> SuperNetModule:
    """SPEC section 5 cost reference: 32->32 channels, convs with bias, no BatchNorm.

    Candidates ``{"conv3x3", "two_conv3x3", "conv5x5", "identity"}`` with conv+bias
    parameters 9,248 (``32*(32*9+1)``), 18,496 (twice that), 25,632 (``32*(32*25+1)``)
    and 0. All keep the spatial size (padding ``k // 2``), so on a ``(N, 32, 64, 64)``
    input every conv has 4,096 output positions and, with ``p`` uniform (1/4 each) at
    init, the expected cost ``sum_i p_i * cost_i`` is 13,344 parameters and
    ``13,344 * 4,096`` MACs.
    """
    return SuperNetModule(
        {
            "conv3x3": nn.Conv2d(32, 32, 3, padding=1),
            "two_conv3x3": nn.Sequential(
                nn.Conv2d(32, 32, 3, padding=1), nn.Conv2d(32, 32, 3, padding=1)
            ),
            "conv5x5": nn.Conv2d(32, 32, 5, padding=2),
            "identity": nn.Identity(),
        }
    )


# --------------------------------------------------------------------------- ResNet-8
