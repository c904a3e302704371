"""A DDP fit (gloo, 2 CPU processes) with a DNASCallback cascade; each rank saves what it
ends with. Run as a script (DDP re-executes sys.argv in the children): ``python
tests/callback/ddp_fit.py OUT_DIR [QUANTIZE]``; ``QUANTIZE`` (e.g. ``int8``) makes the
final fine-tune quantisation-aware."""

from __future__ import annotations

import sys
from pathlib import Path

import lightning as L
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from lightning_dnas import DNASCallback, cascade_stages
from tests.callback.modules import Classifier, TinySuperNet, loaders


def main(out: Path, quantize: str | None = None) -> None:
    L.seed_everything(3, workers=True)
    module = Classifier(TinySuperNet(channels=8))
    stages = cascade_stages(supernet=2, intermediate_finetune=1, pit=2, finetune=1,
                            supernet_strength=3e-3, pit_strength=3e-2)
    dnas = DNASCallback(stages=stages, softmax="gumbel", arch_lr=0.05, export_dir=False,
                        quantize=quantize)
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=6,
                        callbacks=[dnas], logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0)
    train, val = loaders(batch_size=8, n=64)
    trainer.fit(module, train, val)
    torch.save({"state": module.net.state_dict(), "history": dnas.history,
                "epochs": trainer.current_epoch},
               out / f"rank{trainer.global_rank}.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else None)
