"""``network=["backbone", "head"]``: two modules of one LightningModule searched together
through the module's own ``forward`` (lightning_dnas/network_group.py)."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from lightning_dnas import load_network, restore
from lightning_dnas.callback import DNASCallback, network
from lightning_dnas.nas.engine import DNAS
from lightning_dnas.network_group import MASKS
from lightning_dnas.restore import STATE_KEY, save_network

from .modules import fit_with_epoch_checkpoints
from .two_part import NAMES, TwoPart


def _converted() -> tuple[TwoPart, DNAS, object, torch.Tensor]:
    torch.manual_seed(0)
    module, example = TwoPart(), torch.randn(4, 1, 16)
    keeper = network.attach_keeper(module, NAMES, example, "params", lambda net: None)
    search = network.convert(module, NAMES, keeper, example, "pit", {}, "params")
    return module, search, keeper, example


def test_the_channels_flow_from_the_backbone_into_the_head(tmp_path) -> None:
    module, search, keeper, example = _converted()
    # One group spans backbone.c2's outputs and the head's inputs (the mean keeps channels).
    assert "backbone/c2" in search.channel_masks
    assert not isinstance(module.backbone, DNAS) and module.backbone is search.net.backbone
    with torch.no_grad():
        search.channel_masks["backbone/c2"].alpha[[1, 4, 6]] = 0.0
    module.eval()
    want = module(example)  # the module's own forward on the masked parts
    exported, record, _ = network.export(module, NAMES, keeper, search, "s", None, check=True)
    assert exported.backbone is module.backbone and exported.head is module.head
    assert record["arch"]["modules"]["backbone.c2"]["out"] == [0, 2, 3, 5, 7]
    assert module.backbone.c2.out_channels == 5 and module.head.in_features == 5
    assert module.backbone.b2.num_features == 5
    assert MASKS not in module._modules  # plain again: no masks left in the module
    torch.testing.assert_close(module(example), want, rtol=0, atol=1e-5)
    # The exported file rebuilds from a fresh module as the group of its two parts.
    save_network(network.current(module, NAMES), keeper.structure, tmp_path / "net.pt")
    loaded = load_network(TwoPart(), tmp_path / "net.pt").eval()
    assert loaded.head.in_features == 5
    torch.testing.assert_close(loaded(example), want, rtol=0, atol=1e-5)


def test_the_masks_are_module_parameters_and_get_gradients_every_pass() -> None:
    module, search, _, example = _converted()
    assert {id(p) for p in search.nas_parameters()} <= {id(p) for p in module.parameters()}
    alpha = search.channel_masks["backbone/c2"].alpha
    with torch.no_grad():  # the wrapper's own forward (as the export check runs it)
        search(example)
    for _ in range(2):  # a stale cached mask would carry the first pass's graph
        alpha.grad = None
        module(example).square().sum().backward()
        assert alpha.grad is not None and alpha.grad.abs().sum() > 0


def _fit(tmp_path, ckpt_path=None) -> tuple[TwoPart, DNASCallback]:
    L.seed_everything(3, workers=True)
    module = TwoPart()
    dnas = DNASCallback("pit", network=NAMES, strength=3e-3, arch_lr=0.05, search_epochs=3,
                        finetune_epochs=1, export_dir=tmp_path / "dnas")
    fit_with_epoch_checkpoints(module, dnas, tmp_path, 4, ckpt_path)
    return module, dnas


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    path = tmp_path_factory.mktemp("several")
    module, dnas = _fit(path)
    return path, {k: v.clone() for k, v in module.state_dict().items()
                  if torch.is_tensor(v)}, dnas, module


def test_the_fit_searches_across_both_and_exports_both(uninterrupted) -> None:
    _, _, dnas, module = uninterrupted
    arch = dnas.history[0]["arch"]["modules"]
    kept = arch["backbone.c2"]["out"]
    assert kept is not None and len(kept) < 8, "the search removed none of the shared channels"
    assert arch["head"]["in"] == kept
    assert arch["backbone.c2"]["out_channels"] == module.head.in_features == len(kept)
    assert module.backbone.b2.num_features == len(kept)
    assert set(dict(dnas.exported.named_children())) == set(NAMES)
    assert dnas.exported.head is module.head
    # final.pt rebuilds both parts from a fresh module; it computes the module's forward.
    path = uninterrupted[0] / "dnas" / "final.pt"
    loaded = load_network(TwoPart(), path).eval()
    x = torch.randn(4, 1, 16)
    torch.testing.assert_close(loaded(x), module.eval()(x), rtol=0, atol=1e-6)


def test_resume_mid_search_equals_uninterrupted(uninterrupted, tmp_path) -> None:
    path, want, dnas_full, _ = uninterrupted
    module, dnas = _fit(tmp_path, ckpt_path=path / "epoch=1.ckpt")
    # It resumed: only epochs 2 and 3 ran (and wrote checkpoints) in this fit.
    assert sorted(p.name for p in tmp_path.glob("*.ckpt")) == ["epoch=2.ckpt", "epoch=3.ckpt"]
    assert [h["arch"] for h in dnas.history] == [h["arch"] for h in dnas_full.history]
    have = module.state_dict()
    assert set(have) - {STATE_KEY} == set(want)
    for key, value in want.items():
        assert torch.equal(have[key], value), key


@pytest.mark.parametrize("epoch", [1, 3])
def test_restore_rebuilds_both_modules(uninterrupted, epoch) -> None:
    path = uninterrupted[0]
    ckpt = path / f"epoch={epoch}.ckpt"
    module = restore(TwoPart(), ckpt)
    state = torch.load(ckpt, weights_only=False)["state_dict"]
    have = module.state_dict()
    for key, value in state.items():
        if torch.is_tensor(value):
            assert torch.equal(have[key], value), key
    searching = epoch == 1
    assert (MASKS in module._modules) == searching
    if not searching:
        assert module.head.in_features == module.backbone.b2.num_features < 8
