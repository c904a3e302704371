"""The regulariser enters the gradients exactly as in a hand-written loop.

For each training configuration the gradients of every weight (as the user's optimizer
sees them: unscaled, accumulated, clipped) and of every architecture parameter (as the
architecture optimizer sees them) at the first optimizer step of a search stage are
compared with a plain PyTorch loop that adds ``lambda * soft cost`` to the loss itself.
"""

from __future__ import annotations

import copy

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch import Callback
from lightning.pytorch.plugins.precision import MixedPrecision
from torch.utils.data import DataLoader

from lightning_dnas import PIT
from lightning_dnas.callback import DNASCallback

from .modules import Classifier, TinyTCN, toy_data

STRENGTH = {"params": 3e-3, "macs": 1e-4}
COSTS = {"params": "params", "macs": "macs"}


class RecordingSGD(torch.optim.SGD):
    """SGD that records the gradients it is about to apply (after the closure: unscaled,
    accumulated and clipped, as the step sees them)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[list[torch.Tensor]] = []

    def step(self, closure=None):
        loss = closure() if closure is not None else None
        self.seen.append([p.grad.detach().clone() for g in self.param_groups
                          for p in g["params"]])
        super().step()
        return loss


class RecordingClassifier(Classifier):
    def configure_optimizers(self):
        self.opt = RecordingSGD(self.parameters(), lr=self.lr, momentum=0.9)
        return self.opt


class ArchProbe(Callback):
    """Listed before DNASCallback: records the architecture gradients (unscaled) at the
    first optimizer step, before the callback steps and clears them."""

    def __init__(self) -> None:
        self.grads: dict[str, torch.Tensor] | None = None

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        if self.grads is not None:
            return
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        scale = 1.0 if scaler is None else float(scaler.get_scale())
        search = pl_module.net
        self.grads = {n: p.grad.detach().clone() / scale
                      for n, p in search.named_parameters() if _is_arch(n)}


def _is_arch(name: str) -> bool:
    return name.startswith(("channel_masks.", "tap_masks."))


def _reference(seed, batches, precision, accum, clip):
    """The hand-written loop: convert, add lambda * cost to each loss, backpropagate."""
    search = PIT(copy.deepcopy(seed), batches[0][0][:8], cost=COSTS)
    search.train()
    scale = 65536.0 if precision == "fp16" else 1.0
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    for x, y in batches[:accum]:
        with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
            task = F.cross_entropy(search(x), y)
        loss = task / accum
        reg = search.regularizer(STRENGTH) / accum
        ((loss + reg) * scale if scale != 1.0 else loss + reg).backward()
    weights = [p for n, p in search.named_parameters() if not _is_arch(n)]
    for p in search.parameters():
        p.grad = p.grad / scale
    if clip is not None:
        torch.nn.utils.clip_grad_norm_(weights, clip)
    return ({n: p.grad for n, p in search.named_parameters() if not _is_arch(n)},
            {n: p.grad for n, p in search.named_parameters() if _is_arch(n)})


CASES = {
    "fp32": dict(precision="32", accum=1, clip=None),
    "bf16-mixed": dict(precision="bf16", accum=1, clip=None),
    "fp16-scaler": dict(precision="fp16", accum=1, clip=None),
    "accumulate-4": dict(precision="32", accum=4, clip=None),
    "clip-norm": dict(precision="32", accum=1, clip=0.05),
}


@pytest.mark.parametrize("case", list(CASES))
def test_gradients_equal_hand_written_loop(case):
    cfg = CASES[case]
    torch.manual_seed(0)
    seed = TinyTCN()
    loader = DataLoader(toy_data(64), batch_size=8)
    batches = list(loader)
    module = RecordingClassifier(copy.deepcopy(seed))
    probe = ArchProbe()
    dnas = DNASCallback(cost=COSTS, strength=STRENGTH, search_epochs=1, finetune_epochs=0,
                        export_dir=False, check_export=False)
    kwargs = {}
    if cfg["precision"] == "fp16":
        kwargs["plugins"] = [MixedPrecision("16-mixed", "cpu",
                                           scaler=torch.amp.GradScaler("cpu"))]
    elif cfg["precision"] == "bf16":
        kwargs["precision"] = "bf16-mixed"
    trainer = L.Trainer(max_epochs=1, limit_train_batches=cfg["accum"], limit_val_batches=0,
                        accumulate_grad_batches=cfg["accum"], gradient_clip_val=cfg["clip"],
                        callbacks=[probe, dnas], logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, **kwargs)
    trainer.fit(module, loader)

    ref_weights, ref_arch = _reference(seed, batches, cfg["precision"], cfg["accum"],
                                       cfg["clip"])
    got = module.opt.seen[0]
    assert len(got) == len(ref_weights)
    for (name, want), have in zip(ref_weights.items(), got, strict=True):
        _close(have, want, name)
    assert probe.grads is not None and set(probe.grads) == set(ref_arch)
    for name, want in ref_arch.items():
        _close(probe.grads[name], want, name)


def _close(have: torch.Tensor, want: torch.Tensor, name: str) -> None:
    assert have.shape == want.shape, name
    scale = want.abs().max().clamp_min(1e-12)
    assert (have - want).abs().max() / scale <= 1e-6, name


class TwoOptimizers(Classifier):
    """Manual optimization: the first block and the rest have their own optimizer and each
    takes a step after its own forward and backward on the same batch."""

    def __init__(self, net) -> None:
        super().__init__(net)
        self.automatic_optimization = False

    def configure_optimizers(self):
        first = [p for n, p in self.named_parameters() if ".c1." in n or ".b1." in n]
        rest = [p for n, p in self.named_parameters() if not (".c1." in n or ".b1." in n)]
        self.opts = (RecordingSGD(first, lr=self.lr, momentum=0.9),
                     RecordingSGD(rest, lr=self.lr, momentum=0.9))
        return list(self.opts)

    def training_step(self, batch, batch_idx):
        opt_a, opt_b = self.optimizers()
        x, y = batch
        opt_a.zero_grad()
        self.manual_backward(F.cross_entropy(self.net(x), y))
        opt_a.step()
        opt_b.zero_grad()
        self.manual_backward(F.cross_entropy(self.net(x), y))
        opt_b.step()


class BatchEndProbe(ArchProbe):
    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        pass

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.grads is None:
            self.grads = {n: p.grad.detach().clone()
                          for n, p in pl_module.net.named_parameters() if _is_arch(n)}


def test_manual_optimization_adds_the_term_once_per_batch():
    torch.manual_seed(0)
    seed = TinyTCN()
    loader = DataLoader(toy_data(64), batch_size=8)
    x, y = next(iter(loader))
    module = TwoOptimizers(copy.deepcopy(seed))
    probe = BatchEndProbe()
    dnas = DNASCallback(cost=COSTS, strength=STRENGTH, search_epochs=1, finetune_epochs=0,
                        export_dir=False, check_export=False)
    trainer = L.Trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=0,
                        callbacks=[probe, dnas], logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, loader)

    search = PIT(copy.deepcopy(seed), x, cost=COSTS)
    named = [(n, p) for n, p in search.named_parameters() if not _is_arch(n)]
    first = [p for n, p in named if ".c1." in n or ".b1." in n]
    rest = [p for n, p in named if not (".c1." in n or ".b1." in n)]
    opt_a = torch.optim.SGD(first, lr=0.05, momentum=0.9)
    opt_b = torch.optim.SGD(rest, lr=0.05, momentum=0.9)
    (F.cross_entropy(search(x), y) + search.regularizer(STRENGTH)).backward()
    want_a = [p.grad.clone() for p in first]
    opt_a.step()
    opt_b.zero_grad()
    F.cross_entropy(search(x), y).backward()
    want_b = [p.grad.clone() for p in rest]
    for i, (have, want) in enumerate(zip(module.opts[0].seen[0], want_a, strict=True)):
        _close(have, want, f"first[{i}]")
    for i, (have, want) in enumerate(zip(module.opts[1].seen[0], want_b, strict=True)):
        _close(have, want, f"rest[{i}]")
    arch = {n: p.grad for n, p in search.named_parameters() if _is_arch(n)}
    assert set(probe.grads) == set(arch)
    for name, want in arch.items():
        _close(probe.grads[name], want, name)
