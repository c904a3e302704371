"""PIT on the MLPerf Tiny seed models: reference counts, faithful export, arch round trip."""

import copy
import json

import pytest
import torch
from torch import nn

from lightning_dnas import PIT, CostModel, apply_arch
from lightning_dnas.zoo import DSCNN, AutoEncoder, DSCNNThesis, MobileNetV1, ResNet8, TCResNet14
from tests.support import (
    assert_export_matches,
    randomize_masks,
    randomize_norms,
)

SEEDS = {
    "resnet8": (ResNet8, (3, 32, 32), 77_578, 12_542_602),
    "dscnn": (DSCNN, (1, 49, 10), 22_604, 2_728_780),
    "mobilenetv1": (MobileNetV1, (3, 96, 96), 208_114, 7_489_666),
    "autoencoder": (AutoEncoder, (640,), 265_864, 265_864),
    "dscnn_thesis": (DSCNNThesis, (1, 49, 10), 39_244, 4_808_780),
    "tcresnet14": (TCResNet14, (10, 49), 320_491, 3_758_683),
}
each_seed = pytest.mark.parametrize("key", SEEDS, ids=SEEDS)


def make(key, batch=4, seed=0):
    factory, shape, _, _ = SEEDS[key]
    torch.manual_seed(seed)
    model = factory()
    randomize_norms(model, seed)
    return model, torch.randn(batch, *shape)


@each_seed
def test_full_mask_costs_equal_reference_counts(key):
    model, x = make(key)
    search = PIT(model, x, cost={"params": "params", "macs": "macs"})
    _, _, params, macs = SEEDS[key]
    assert search.hard_cost("params") == params
    assert search.hard_cost("macs") == macs
    assert search.soft_cost("params").item() == pytest.approx(params, rel=1e-6)
    assert search.soft_cost("macs").item() == pytest.approx(macs, rel=1e-6)


@each_seed
def test_all_masks_on_computes_the_seed_function(key):
    model, x = make(key)
    search = PIT(model, x)
    model.eval(), search.eval()
    with torch.no_grad():
        assert torch.equal(search(x), model(x))


@each_seed
@pytest.mark.parametrize("mask_seed", [0, 1])
def test_export_equals_masked_network_and_hard_cost(key, mask_seed):
    model, x = make(key)
    search = PIT(model, x, cost={"params": "params", "macs": "macs"})
    randomize_masks(search, mask_seed)
    exported = assert_export_matches(search, x)
    assert not any("Masked" in type(m).__name__ for m in exported.modules())
    assert not any(m._forward_pre_hooks or m._forward_hooks for m in exported.modules())
    assert type(exported) is type(model)
    assert search.hard_cost("params") < SEEDS[key][2]


@each_seed
def test_apply_arch_rebuilds_the_exported_structure(key):
    model, x = make(key)
    search = PIT(model, x)
    randomize_masks(search, 3)
    exported = search.export()
    spec = json.loads(json.dumps(search.arch()))
    fresh = apply_arch(SEEDS[key][0](), spec)
    fresh.load_state_dict(exported.state_dict())
    fresh.eval(), exported.eval()
    with torch.no_grad():
        assert torch.equal(fresh(x), exported(x))


def test_exported_batchnorm_is_sliced_from_the_trained_one():
    model, x = make("resnet8")
    search = PIT(model, x)
    randomize_masks(search, 0)
    exported = search.export()
    keep = search.arch()["modules"]["stack2.conv_bn_relu.conv"]["out"]
    trained = search.net.get_submodule("stack2.conv_bn_relu.bn").layer
    new = exported.stack2.conv_bn_relu.bn
    for name in ("weight", "bias", "running_mean", "running_var"):
        assert torch.equal(getattr(new, name), getattr(trained, name)[keep])


def test_user_model_is_left_unchanged_and_search_is_in_training_mode():
    model, x = make("dscnn")
    model.eval()
    before = copy.deepcopy(model.state_dict())
    search = PIT(model, x)
    assert search.training and all(m.training for m in search.net.modules())
    opt = torch.optim.SGD(search.parameters(), lr=0.1)
    search(x).sum().backward()
    opt.step()
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not model.training


@each_seed
def test_nas_and_net_parameters_are_disjoint_and_complete(key):
    model, x = make(key)
    search = PIT(model, x)
    nas = {id(p) for p in search.nas_parameters()}
    net = {id(p) for p in search.net_parameters()}
    trainable = {id(p) for p in search.parameters() if p.requires_grad}
    assert nas and net and not nas & net
    assert nas | net == trainable
    assert len(net) == len(list(model.parameters()))


def test_frozen_masks_are_not_parameters():
    model, x = make("tcresnet14")
    search = PIT(model, x, train_channels=False, train_rf=False, train_dilation=False)
    assert list(search.nas_parameters()) == []
    only_channels = PIT(model, x, train_rf=False, train_dilation=False)
    assert len(list(only_channels.nas_parameters())) == len(only_channels.channel_masks)


def test_regularizer_forms():
    model, x = make("dscnn")
    search = PIT(model, x, cost={"params": "params", "macs": "macs"})
    p, m = search.soft_cost("params"), search.soft_cost("macs")
    assert search.regularizer(1e-3).item() == pytest.approx(1e-3 * p.item())
    both = search.regularizer({"params": 1e-3, "macs": 1e-6})
    assert both.item() == pytest.approx(1e-3 * p.item() + 1e-6 * m.item())
    # Precomputed soft costs (the callback logs them) are used instead of recomputed ones.
    given = search.regularizer({"params": 1e-3, "macs": 1e-6}, costs={"params": p * 2})
    assert given.item() == pytest.approx(2e-3 * p.item() + 1e-6 * m.item())
    assert search.regularizer(1.0, target=p.item() + 10).item() == 0.0
    hinge = search.regularizer(2.0, target=p.item() - 10)
    assert hinge.item() == pytest.approx(20.0, rel=1e-4)
    hinge.backward()
    assert any(q.grad is not None and q.grad.abs().sum() > 0 for q in search.nas_parameters())
    with pytest.raises(KeyError, match="latency"):
        search.regularizer({"latency": 1.0})
    with pytest.raises(ValueError, match="names no cost"):
        search.regularizer({})


def test_layer_widths_match_the_exported_network():
    model, x = make("dscnn")
    search = PIT(model, x)
    with torch.no_grad():
        for mask in search.channel_masks.values():
            mask.alpha[::2] = 0.0  # theta = |alpha| < 0.5: every other channel pruned
    exported = search.export(check=False)
    rows = search.layer_widths()
    assert [r["layer"] for r in rows] == [n for n, m in exported.named_modules()
                                         if isinstance(m, (nn.Conv2d, nn.Linear))]
    for row in rows:
        layer = exported.get_submodule(row["layer"])
        kept = layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels
        assert row["out_channels"] == kept <= row["original"]
    assert any(r["out_channels"] < r["original"] for r in rows)


def test_soft_cost_gradient_flows_to_every_mask():
    model, x = make("tcresnet14")
    search = PIT(model, x, cost="macs")
    search.soft_cost().backward()
    for name, p in search.named_parameters():
        if "masks" in name:
            assert p.grad is not None and p.grad[:-1].abs().sum() > 0, name


def test_user_cost_functions_and_lookup_table():
    model, x = make("dscnn")
    table = {c: 10.0 * c for c in range(65)}  # a latency table indexed by output channels
    latency = CostModel(
        {
            "conv": lambda s: table[int(s.out_channels)],
            nn.Linear: lambda s: 0.5 * s.in_channels,
        },
        per_call=True,
    )
    search = PIT(model, x, cost={"latency": latency, "convs": lambda s: s.positions})
    # 1 stem conv + 4 pointwise of 64 channels; depthwise convs are not in the table.
    assert search.hard_cost("latency") == 5 * 640.0 + 0.5 * 64
    assert search.hard_cost("convs") == 125 * 9 + 1  # 9 convs at 25x5, one linear
    with pytest.raises(ValueError, match="built-in costs are"):
        PIT(model, x, cost="flops")


def test_include_and_exclude():
    model, x = make("resnet8")
    only = PIT(model, x, include=["stack2.*"])
    randomize_masks(only, 0)
    changed = set(only.arch()["modules"])
    assert changed and all(n.startswith("stack2.") or n.startswith("stack3.") for n in changed)
    outs = {n for n, e in only.arch()["modules"].items() if (e.get("out") or e.get("keep"))}
    assert outs == {"stack2.conv_bn_relu.conv", "stack2.conv", "stack2.shortcut",
                    "stack2.conv_bn_relu.bn", "stack2.bn"}
    excluded = PIT(model, x, exclude=[nn.Linear, "stack1.*"])
    randomize_masks(excluded, 0)
    outs = {n for n, e in excluded.arch()["modules"].items() if e.get("out") is not None}
    # stack1 shares its residual group with the stem: excluding stack1 freezes the stem too.
    assert outs and not any(n.startswith(("stack1.", "stem.")) for n in outs)
    assert excluded.hard_cost() < 77_578


def test_masked_network_gradients_match_activation_masking():
    """Folding masks into BN/conv gives the gradients of conv -> bn -> * mask."""
    torch.manual_seed(0)
    seed = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 6, 3, padding=1, bias=True), nn.ReLU(),
        nn.Flatten(), nn.Linear(6 * 5 * 5, 4),
    )  # fmt: skip
    x = torch.randn(5, 3, 5, 5)
    search = PIT(seed, x)
    randomize_masks(search, 1, 0.2, 1.0)
    search(x).square().sum().backward()
    assert set(search.channel_masks) == {"0", "3"}  # keyed by the layer writing the group
    m1_alpha, m2_alpha = search.channel_masks["0"].alpha, search.channel_masks["3"].alpha

    ref = copy.deepcopy(seed)
    a1 = m1_alpha.detach().clone().requires_grad_()
    a2 = m2_alpha.detach().clone().requires_grad_()

    def hard(alpha):
        theta = torch.cat([alpha[:-1].abs(), torch.ones(1)])
        return (theta > 0.5).float() + theta - theta.detach()

    h = ref[2](ref[1](ref[0](x)) * hard(a1).view(1, -1, 1, 1))
    h = ref[4](ref[3](h) * hard(a2).view(1, -1, 1, 1))
    ref[6](ref[5](h)).square().sum().backward()
    assert torch.allclose(m1_alpha.grad, a1.grad, rtol=1e-5, atol=1e-6)
    assert torch.allclose(m2_alpha.grad, a2.grad, rtol=1e-5, atol=1e-6)
    for (name, p), q in zip(search.net.named_parameters(), ref.parameters(), strict=True):
        assert torch.allclose(p.grad, q.grad, rtol=1e-5, atol=1e-6), name


@each_seed
def test_vectorised_soft_cost_equals_the_per_layer_evaluation(key):
    from lightning_dnas.nas.cost.models import layer_macs, layer_params

    model, x = make(key)
    costs = {"params": "params", "macs": "macs",
             "params_slow": CostModel(lambda s: layer_params(s), per_call=False),
             "macs_slow": CostModel(lambda s: layer_macs(s), per_call=True)}  # fmt: skip
    search = PIT(model, x, cost=costs)
    randomize_masks(search, 2, 0.0, 1.2)
    for fast, slow in (("params", "params_slow"), ("macs", "macs_slow")):
        a, b = search.soft_cost(fast), search.soft_cost(slow)
        assert a.item() == pytest.approx(b.item(), rel=1e-5)
        ga = torch.autograd.grad(a, list(search.nas_parameters()))
        gb = torch.autograd.grad(b, list(search.nas_parameters()))
        for u, v in zip(ga, gb, strict=True):
            assert torch.allclose(u, v, rtol=1e-4, atol=1e-3 * float(v.abs().max()) + 1e-6)


@pytest.mark.parametrize("key", ["resnet8", "tcresnet14"])
def test_a_whole_search_network_survives_torch_save_and_load(key, tmp_path):
    # torch.fx rebuilds a pickled GraphModule by re-tracing with its tracer class built
    # without arguments: the search network's tracer must allow that.
    model, x = make(key)
    search = PIT(model, x[:1], cost="params")
    randomize_masks(search, 0, 0.2, 1.0)
    search(x).sum().backward()
    torch.save(search, tmp_path / "search.pt")
    loaded = torch.load(tmp_path / "search.pt", weights_only=False)
    search.eval(), loaded.eval()
    with torch.no_grad():
        assert torch.equal(loaded(x), search(x))
    assert loaded.hard_cost() == search.hard_cost()
    assert loaded.arch() == search.arch()
