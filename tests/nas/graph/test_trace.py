"""Untraceable networks give UnsupportedModelError naming the module; the model is untouched."""

import pytest
import torch
from torch import nn

from lightning_dnas import PIT, UnsupportedModelError


class DataDependent(nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # Python control flow on a tensor value
            return x
        return -x


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.gate = DataDependent()

    def forward(self, x):
        return self.gate(self.conv(x))


def test_untraceable_model_names_the_module_and_suggests_a_fix():
    model = Net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(UnsupportedModelError,
                       match=r"inside `gate`.*control flow.*leaf_modules=\['gate'\]"):  # fmt: skip
        PIT(model, torch.randn(1, 3, 4, 4))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert type(model.gate) is DataDependent


class SizedByShape(nn.Module):
    def forward(self, x):
        n = x.shape[1]  # a traced value: fx rejects the factory it sizes
        return x @ torch.ones(n, n)


def test_the_error_quotes_the_line_fx_rejected():
    with pytest.raises(UnsupportedModelError) as info:
        PIT(SizedByShape(), torch.randn(2, 3))
    message = str(info.value)
    assert f"test_trace.py:{SizedByShape.forward.__code__.co_firstlineno + 2}:" in message
    assert "`return x @ torch.ones(n, n)`" in message
    assert "no new tensor sized by a shape read from an input" in message


def test_leaf_module_makes_it_traceable_and_freezes_its_channels():
    for leaf in (DataDependent, "gate"):  # by type, or by the name the error gives
        with pytest.warns(UserWarning, match="conv are kept whole"):
            search = PIT(Net(), torch.randn(1, 3, 4, 4), leaf_modules=[leaf])
        assert list(search.nas_parameters()) == []
