"""MaskBank: all masks binarized, the norms' affine parameters and the unnormalised convs'
and linears' weights folded and the alphas concatenated once per forward pass, against
each layer computing its own (the bank disconnected), and never a stale value."""

import copy
from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from lightning_dnas import PIT
from lightning_dnas.nas.pit.layers import MaskedBatchNorm, MaskedConv, MaskedLinear
from lightning_dnas.nas.pit.masks import MaskBank
from lightning_dnas.zoo import ResNet8


class _Ops(TorchDispatchMode):
    """Counts the aten ops that run (``ops``) and keeps their order (``sequence``)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()
        self.sequence: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[str(func)] += 1
        self.sequence.append(str(func))
        return func(*args, **(kwargs or {}))


class _Plain(torch.nn.Module):
    """Convs and a linear without norms, one conv without bias: every layer's own weights
    carry its mask."""

    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.b = torch.nn.Conv2d(8, 12, 3, padding=1)
        self.fc1 = torch.nn.Linear(12, 16)
        self.fc2 = torch.nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.b(torch.relu(self.a(x))))
        return self.fc2(torch.relu(self.fc1(x.mean((2, 3)))))


def _search(seed: int = 0) -> tuple[PIT, torch.Tensor]:
    torch.manual_seed(seed)
    x = torch.randn(2, 3, 32, 32)
    search = PIT(ResNet8(), x[:1], cost="params")
    with torch.no_grad():  # some channels pruned, so the masks are not all ones
        for mask in search.channel_masks.values():
            mask.alpha.uniform_(-1.0, 1.5)
    return search, x


def _own_values(search: PIT) -> PIT:
    """A copy whose layers compute their own masks and folds (no bank)."""
    other = copy.deepcopy(search)
    other.net._forward_pre_hooks.pop(other._bank_hook)
    other._bank.disconnect()
    return other


def _without_fold(search: PIT) -> PIT:
    """A copy whose bank binarizes the masks but folds no norm."""
    other = copy.deepcopy(search)
    other.net._forward_pre_hooks.pop(other._bank_hook)
    masks = other._bank.masks
    other._bank.disconnect()
    other.net.register_forward_pre_hook(MaskBank(masks))
    return other


def _loss_and_grads(search: PIT, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
    search.zero_grad(set_to_none=True)
    out = search(x)
    (out.square().mean() + search.regularizer(1e-3)).backward()
    return out.detach(), {n: p.grad for n, p in search.named_parameters()}


def test_the_bank_folds_every_batch_norm_with_one_mask():
    search, _ = _search()
    norms = [m for m in search.net.modules() if isinstance(m, MaskedBatchNorm)]
    assert len(norms) == 7
    assert search._bank.norms == norms


def test_the_bank_folds_the_convs_without_a_norm_after_them():
    search, _ = _search()
    # ResNet-8's two 1x1 shortcut convs; the classifier's outputs are not searched.
    shortcuts = [m for m in search.net.modules() if isinstance(m, MaskedConv) and m._out]
    assert len(shortcuts) == 2
    assert search._bank.layers == shortcuts


def test_the_passs_mask_ops_all_run_before_the_first_convolution():
    search, x = _search()
    with _Ops() as ops:
        search(x)
    seq = ops.sequence
    first_conv = seq.index("aten.convolution.default")
    assert "aten.mul.Tensor" in seq[:first_conv]
    assert "aten.mul.Tensor" not in seq[first_conv:]  # no mask op between the kernels


def _plain_search(seed: int = 0) -> tuple[PIT, torch.Tensor]:
    torch.manual_seed(seed)
    x = torch.randn(2, 3, 8, 8)
    search = PIT(_Plain(), x[:1], cost="params")
    with torch.no_grad():
        for mask in search.channel_masks.values():
            mask.alpha.uniform_(-1.0, 1.5)
    return search, x


@pytest.mark.parametrize("make", [_search, _plain_search], ids=["resnet8", "convs-and-linears"])
def test_bank_and_own_values_give_the_same_outputs_and_gradients(make):
    search, x = make()
    other = _own_values(search)
    out, grads = _loss_and_grads(search, x)
    out_own, grads_own = _loss_and_grads(other, x)
    assert torch.equal(out, out_own)
    assert grads.keys() == grads_own.keys()
    for name, grad in grads.items():
        assert grad is not None, name
        torch.testing.assert_close(grad, grads_own[name], rtol=1e-6, atol=1e-9)


def test_the_fold_replaces_two_multiplies_per_norm_by_two_in_all():
    search, x = _search()
    other = _without_fold(search)
    with _Ops() as bank, torch.no_grad():
        search(x)
    with _Ops() as own, torch.no_grad():
        other(x)
    norms = len(search._bank.norms)
    assert own.ops["aten.mul.Tensor"] - bank.ops["aten.mul.Tensor"] == 2 * norms - 2
    # the soft cost reads the pass's concatenation of the alphas (not one made without grad)
    with _Ops() as ops:
        search.regularizer(1e-3)
    assert ops.ops["aten.cat.default"] == 1
    search(x)
    with _Ops() as ops:
        search.regularizer(1e-3)
    assert ops.ops["aten.cat.default"] == 0


def test_convs_and_linears_fold_with_and_without_bias():
    search, x = _plain_search()
    layers = search._bank.layers
    assert [type(n) for n in layers] == [MaskedConv, MaskedConv, MaskedLinear]
    search(x)
    for n in layers:
        m = n.fold_mask.value()
        weight, bias = n._folded[:2]
        shape = (-1,) + (1,) * (n.layer.weight.dim() - 1)
        assert torch.equal(weight, n.layer.weight * m.view(shape))
        assert (bias is None) == (n.layer.bias is None)
        if bias is not None:
            assert torch.equal(bias, n.layer.bias * m)


def test_a_conv_called_after_an_in_place_update_reads_the_new_weight():
    search, x = _plain_search()
    search(x)
    conv = search._bank.layers[1]
    with torch.no_grad():
        conv.layer.bias.add_(1.0)
    inp = torch.randn(2, 8, 4, 4)
    m = conv.fold_mask.value()
    want = F.conv2d(inp, conv.layer.weight * m.view(-1, 1, 1, 1), conv.layer.bias * m,
                    padding=1)  # fmt: skip
    assert conv.current_fold() is None
    assert torch.equal(conv(inp), want)


def test_a_norm_called_after_an_in_place_update_reads_the_new_weight():
    search, x = _search()
    search(x)
    norm = search._bank.norms[0]
    with torch.no_grad():
        norm.layer.weight.mul_(2.0)  # what an optimizer step does
    inp = torch.randn(2, norm.layer.num_features, 4, 4)
    weight, bias = norm.folded(inp)
    m = norm._mask(inp)
    assert torch.equal(weight, norm.layer.weight * m)
    assert torch.equal(bias, norm.layer.bias * m)


def test_a_mask_changed_in_place_is_not_read_from_the_bank():
    search, x = _search()
    search(x)
    norm = search._bank.norms[0]
    mask = norm.fold_mask
    with torch.no_grad():
        mask.alpha.fill_(-0.1)  # every channel but the last pruned
    inp = torch.randn(2, norm.layer.num_features, 4, 4)
    weight, _ = norm.folded(inp)
    assert int((weight != 0).sum()) <= 1
    assert mask.value().sum().item() == 1.0
    assert search._bank.alphas() is not search._bank._alpha[0]


def test_values_computed_without_grad_are_not_used_with_grad():
    search, x = _search()
    with torch.no_grad():
        search(x)
    norm = search._bank.norms[0]
    inp = torch.randn(2, norm.layer.num_features, 4, 4)
    weight, _ = norm.folded(inp)
    assert weight.requires_grad
    assert norm.fold_mask.value().requires_grad
    assert search._bank.alphas().requires_grad


def test_the_soft_cost_reuses_the_pass_concatenation_and_matches_a_fresh_one():
    search, x = _search()
    search(x)
    bank = search._bank
    assert bank.alphas() is bank._alpha[0]
    cost = search.soft_cost()
    other = _own_values(search)
    assert torch.equal(cost, other.soft_cost())
    cost.backward()
    other.soft_cost().backward()
    for (name, p), q in zip(search.named_parameters(), other.parameters(), strict=True):
        if p.grad is not None or q.grad is not None:
            assert torch.equal(p.grad, q.grad), name


def test_a_search_network_copies_after_a_forward():
    search, x = _search()
    loss = F.cross_entropy(search(x), torch.tensor([0, 1]))
    twin = copy.deepcopy(search)  # this pass's values hold an autograd graph
    loss.backward()
    assert torch.equal(twin(x), search(x))
    assert twin._bank.norms[0]._folded[0].grad_fn is not None
    assert any(twin._bank.norms[0].fold_mask is m for m in twin.channel_masks.values())


def test_a_disconnected_bank_serves_nothing():
    search, x = _search()
    search(x)
    search._bank.disconnect()
    search(x)
    assert all(m._current is None for m in search.channel_masks.values())
    assert all(n._folded is None for n in search.net.modules()
               if isinstance(n, (MaskedBatchNorm, MaskedConv)))  # fmt: skip
    bank = search._bank
    assert bank._alpha is None
    fresh = bank.alphas()
    assert fresh is not bank.alphas()  # a new concatenation each time
    assert torch.equal(fresh, torch.cat([m.alpha for m in search.channel_masks.values()]))
