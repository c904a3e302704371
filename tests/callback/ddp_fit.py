"""A DDP fit (gloo, 2 CPU processes) with a DNASCallback cascade; each rank saves what it
ends with. Run as a script (DDP re-executes sys.argv in the children): ``python
tests/callback/ddp_fit.py OUT_DIR [int8] [several]``; ``int8`` makes the final fine-tune
quantisation-aware; ``several`` fits, instead of the cascade on one network, a PIT search
of two modules wired in the LightningModule's ``forward`` (``network=["backbone",
"head"]``, tests/callback/two_part.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import lightning as L
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from lightning_dnas import DNASCallback, cascade_stages
from lightning_dnas.network_group import gather
from tests.callback.modules import Classifier, TinySuperNet, loaders
from tests.callback.two_part import NAMES, TwoPart


def main(out: Path, quantize: str | None = None, several: bool = False) -> None:
    L.seed_everything(3, workers=True)
    if several:
        module: L.LightningModule = TwoPart()
        dnas = DNASCallback("pit", network=NAMES, search_epochs=2, finetune_epochs=1,
                            strength=3e-3, arch_lr=0.1, export_dir=False, quantize=quantize)
    else:
        module = Classifier(TinySuperNet(channels=8))
        stages = cascade_stages(supernet=2, intermediate_finetune=1, pit=2, finetune=1,
                                supernet_strength=3e-3, pit_strength=3e-2)
        dnas = DNASCallback(stages=stages, softmax="gumbel", arch_lr=0.05, export_dir=False,
                            quantize=quantize)
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp",
                        max_epochs=3 if several else 6,
                        callbacks=[dnas], logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0)
    train, val = loaders(batch_size=8, n=64)
    trainer.fit(module, train, val)
    net = gather(module, dnas.network)  # the network, or the group of several
    torch.save({"state": net.state_dict(), "history": dnas.history,
                "epochs": trainer.current_epoch},
               out / f"rank{trainer.global_rank}.pt")


if __name__ == "__main__":
    flags = sys.argv[2:]
    main(Path(sys.argv[1]), "int8" if "int8" in flags else None, "several" in flags)
