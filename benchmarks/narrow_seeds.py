"""Uniformly narrower copies of the MNIST-1D seed, trained as long as the default run.

``python benchmarks/narrow_seeds.py [--channels 8 12 16] [--epochs 60]`` trains
``Mnist1dTCN(channels=c, dilations=[1, 1, 2, 2])`` with the application's classifier, data
and optimizer defaults (Adam 1e-3, weight decay 1e-4, cosine-annealed over the epochs as the
application's final trainings, batch 64, seed 0, one thread) and
prints params, MACs and test accuracy per width: the baseline the found network of
``python -m lightning_dnas.train`` should beat at equal parameters.
"""

from __future__ import annotations

import argparse
import functools

import lightning as L
import torch

from lightning_dnas.app.modules import ClassificationModule
from lightning_dnas.app.report import network_costs
from lightning_dnas.data import MNIST1DDataModule
from lightning_dnas.zoo import Mnist1dTCN


def main() -> None:
    """Train each width and print one row per network."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, nargs="+", default=[8, 12, 16])
    parser.add_argument("--epochs", type=int, default=60)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("channels  params  MACs  test acc")
    for channels in args.channels:
        L.seed_everything(0, workers=True)
        dm = MNIST1DDataModule(batch_size=64)
        dm.setup()
        net = Mnist1dTCN(channels=channels, dilations=[1, 1, 2, 2])
        optimizer = functools.partial(torch.optim.Adam, lr=1e-3, weight_decay=1e-4)
        module = ClassificationModule(net, optimizer, num_classes=10, anneal_epochs=args.epochs)
        L.Trainer(max_epochs=args.epochs, logger=False, enable_checkpointing=False,
                  enable_progress_bar=False, enable_model_summary=False,
                  num_sanity_val_steps=0).fit(module, datamodule=dm)  # fmt: skip
        params, macs = network_costs(net, torch.zeros(2, 1, 40))
        acc = module.evaluate(dm.test_dataloader())["acc"]
        print(f"{channels:8d}  {params:6,}  {macs:,}  {acc:.2%}", flush=True)


if __name__ == "__main__":
    main()
