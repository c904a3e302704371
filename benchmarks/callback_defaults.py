"""How the DNASCallback's default ``arch_lr`` and ``strength`` were chosen (docs/CALLBACK.md,
"Defaults"): what a short default-shaped fit removes on the zoo seeds.

Each run: ``DNASCallback("pit", arch_lr=.., strength=..)`` with the default stage shape
(no warmup, ``search_epochs`` epochs; the fine-tune is left out because it cannot change
what the export removed), 8 training batches of 32 per epoch, Adam 1e-3 on the weights,
on a learnable synthetic task of the model's input shape (labels: the argmax of a fixed
random linear map of the input, so the task gradient is not noise). Printed per model and
setting: the architecture steps, the channels and kernel taps removed (of the seed's) and
the params cost after/before.

    .venv/bin/python benchmarks/callback_defaults.py [--epochs 10] [--models resnet8,dscnn]
"""

from __future__ import annotations

import argparse
import functools
import time
import warnings

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from lightning_dnas import DNASCallback
from lightning_dnas.app.modules import ClassificationModule
from lightning_dnas.zoo import DSCNN, Mnist1dTCN, MobileNetV1, ResNet8, TCResNet14

MODELS = {
    "mnist1d": (lambda: Mnist1dTCN(dilations=[1, 1, 2, 2]), (1, 40), 10),
    "resnet8": (ResNet8, (3, 32, 32), 10),
    "dscnn": (DSCNN, (1, 49, 10), 12),
    "tcresnet14": (TCResNet14, (10, 49), 12),
    "mobilenetv1": (MobileNetV1, (3, 96, 96), 2),
}
SETTINGS = [(1e-3, 1e-6), (1e-2, 1e-6), (1e-2, 1e-5), (1e-2, 1e-4)]


def _data(shape: tuple[int, ...], classes: int, n: int, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *shape, generator=g)
    w = torch.randn(x[0].numel(), classes, generator=torch.Generator().manual_seed(99))
    return TensorDataset(x, (x.flatten(1) @ w).argmax(1))


def _widths(net: torch.nn.Module) -> tuple[int, int]:
    channels = taps = 0
    for m in net.modules():
        if isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d)):
            channels, taps = channels + m.out_channels, taps + m.kernel_size[0]
        elif isinstance(m, torch.nn.Linear):
            channels, taps = channels + m.out_features, taps + 1
    return channels, taps


def run(name: str, arch_lr: float, strength: float, epochs: int) -> dict[str, float]:
    """One fit; what its export removed."""
    build, shape, classes = MODELS[name]
    L.seed_everything(0, verbose=False)
    net = build()
    seed_channels, seed_taps = _widths(net)
    module = ClassificationModule(net, functools.partial(torch.optim.Adam, lr=1e-3), classes)
    dnas = DNASCallback("pit", arch_lr=arch_lr, strength=strength, search_epochs=epochs,
                        finetune_epochs=0, export_dir=False)  # fmt: skip
    train = DataLoader(_data(shape, classes, 256, 0), batch_size=32, shuffle=True)
    val = DataLoader(_data(shape, classes, 64, 1), batch_size=64)
    trainer = L.Trainer(callbacks=[dnas], logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0, limit_train_batches=8,
                        max_epochs=epochs)  # fmt: skip
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, train, val)
    record = dnas.history[0]
    return {"removed_channels": record["removed"]["channels"], "channels": seed_channels,
            "removed_taps": record["removed"]["taps"], "taps": seed_taps,
            "params": record["costs"]["params"], "steps": 8 * epochs,
            "seconds": time.perf_counter() - start}  # fmt: skip


def main() -> None:
    """Print one row per model and setting."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--settings", default=",".join(f"{a:g}:{s:g}" for a, s in SETTINGS),
                        help="arch_lr:strength pairs, comma-separated")
    args = parser.parse_args()
    settings = [tuple(float(v) for v in pair.split(":")) for pair in args.settings.split(",")]
    for name in args.models.split(","):
        for arch_lr, strength in settings:
            r = run(name, arch_lr, strength, args.epochs)
            print(f"{name:12s} arch_lr={arch_lr:<6g} strength={strength:<6g} steps={r['steps']:4d} "
                  f"channels -{r['removed_channels']}/{r['channels']} "
                  f"taps -{r['removed_taps']}/{r['taps']} params {r['params']:,.0f} "
                  f"({r['seconds']:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
