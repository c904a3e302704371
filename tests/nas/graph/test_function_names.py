"""Functions are recognised by their torch identity, not by a look-alike bare name."""

import pytest
import torch
from torch import nn

from lightning_dnas import PIT


def relu(x):  # a look-alike: not zero-preserving at all
    return x + 1.0


relu.__module__ = "torchmylib"
torch.fx.wrap("relu")


class LookAlike(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 1)
        self.b = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        return self.b(relu(self.a(x)))


def test_foreign_function_with_a_torch_name_is_not_trusted():
    x = torch.randn(2, 3, 4, 4)
    with pytest.warns(UserWarning, match="relu.*output channels of a are kept whole"):
        search = PIT(LookAlike(), x)
    with torch.no_grad():
        for p in search.nas_parameters():
            p.uniform_(0, 1)
    exported = search.export()  # check=True: raises if the export differs
    with torch.no_grad():
        assert torch.allclose(search.eval()(x), exported.eval()(x), atol=1e-6)


class Swap(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 1)
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        return self.fc(self.a(x).swapaxes(1, 3))


def test_swapaxes_moves_the_channel_dim():
    search = PIT(Swap(), torch.randn(2, 3, 4, 4))
    assert set(search.channel_masks) == {"a"}
