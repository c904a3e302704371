"""Missing optional dependencies fail with the extra that installs them."""

from __future__ import annotations

import sys

import pytest

from lightning_dnas.data._base import require
from lightning_dnas.data.cifar10 import image_transforms


def test_require_names_the_extra():
    with pytest.raises(ModuleNotFoundError, match=r"the thing need no_such_pkg: pip install "
                                                  r"'lightning_dnas\[audio\]'"):
        require("no_such_pkg.sub", "audio", "the thing")


def test_image_transforms_without_torchvision_name_the_vision_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision.transforms.v2", None)
    with pytest.raises(ModuleNotFoundError, match=r"lightning_dnas\[vision\]"):
        image_transforms((0.5,), (0.5,), augment=False)
