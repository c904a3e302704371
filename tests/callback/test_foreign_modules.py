"""Modules shaped unlike the project's own: errors that say what to do, and the network
built in ``configure_model`` with ``network=``."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import nn

from lightning_dnas import PIT, DNASCallback, UnsupportedModelError
from lightning_dnas.nas.engine import DNAS

from .modules import Classifier, TinyTCN, loaders


def _trainer(dnas: DNASCallback) -> L.Trainer:
    return L.Trainer(callbacks=[dnas], logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False,
                     num_sanity_val_steps=0)  # fmt: skip


class BranchyRoot(TinyTCN):
    """A Python branch on a tensor's value in the network's own forward."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            x = -x
        return super().forward(x)


def test_an_untraceable_root_forward_gets_advice_that_can_be_followed():
    with pytest.raises(UnsupportedModelError) as info:
        PIT(BranchyRoot(), torch.randn(2, 1, 16))
    message = str(info.value)
    assert "the top-level module" not in message and "leaf_modules=['" not in message
    assert "BranchyRoot.forward traceable" in message and "network='<attribute>'" in message


def test_a_shape_error_names_where_the_example_input_came_from():
    train, val = loaders()
    model = Classifier(TinyTCN())
    model.example_input_array = torch.randn(4, 3, 16)  # 3 channels for a 1-channel conv
    with pytest.raises(MisconfigurationException) as info:
        _trainer(DNASCallback(export_dir=False)).fit(model, train, val)
    message = str(info.value)
    assert "shape [4, 3, 16]" in message and "Classifier.example_input_array" in message
    assert "example_input=" in message


def test_network_given_by_name_and_built_in_configure_model():
    train, val = loaders()

    class Late(Classifier):
        """The network under ``backbone``, built in configure_model (idempotently, as
        Lightning asks), next to a second trainable child the callback must not pick."""

        def __init__(self):
            super().__init__(nn.Identity())
            del self.net
            self.extra = nn.Linear(2, 2)

        def configure_model(self):
            if not hasattr(self, "backbone"):
                self.backbone = TinyTCN()

        def training_step(self, batch, batch_idx):
            x, y = batch
            return nn.functional.cross_entropy(self.backbone(x), y)

        def validation_step(self, batch, batch_idx):
            x, y = batch
            self.log("val_loss", nn.functional.cross_entropy(self.backbone(x), y))

    model = Late()
    dnas = DNASCallback(network="backbone", search_epochs=1, finetune_epochs=1,
                        export_dir=False)  # fmt: skip
    _trainer(dnas).fit(model, train, val)
    assert dnas.exported is model.backbone and not isinstance(model.backbone, DNAS)
    assert dnas.history[0]["stage"] == "0-search-pit"
