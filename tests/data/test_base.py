"""BaseDataModule: the training shuffle continues across a state_dict round trip (resume)."""

from __future__ import annotations

import torch

from lightning_dnas.data import DigitsDataModule


def epoch_labels(loader: torch.utils.data.DataLoader) -> torch.Tensor:
    return torch.cat([y for _, y in loader])


def test_a_restored_module_continues_the_batch_order() -> None:
    first = DigitsDataModule(batch_size=64, seed=3)
    first.setup("fit")
    assert first.state_dict() == {}  # nothing to keep before a training loader exists
    loader = first.train_dataloader()
    epoch_1 = epoch_labels(loader)
    saved = first.state_dict()  # what a checkpoint at the end of epoch 1 holds
    epoch_2 = epoch_labels(loader)
    assert not torch.equal(epoch_1, epoch_2)  # reshuffled each epoch

    resumed = DigitsDataModule(batch_size=64, seed=3)
    resumed.setup("fit")
    resumed.load_state_dict(saved)
    assert torch.equal(epoch_labels(resumed.train_dataloader()), epoch_2)
    # a fresh fit (no state loaded) starts the sequence again
    assert torch.equal(epoch_labels(resumed.train_dataloader()), epoch_1)
