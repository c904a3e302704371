"""SuperNetModule: construction, forward in every mode, hard-mode fast path, eval, ICV."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.fx
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_dnas.nas.supernet import (
    HARD_MODES,
    MODES,
    SuperNetModule,
    icv_loss,
    set_softmax,
    set_temperature,
    supernet_modules,
)

C = 4


def conv_bn(k: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(C, C, k, padding=k // 2), nn.BatchNorm2d(C), nn.ReLU())


def dw_sep() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(C, C, 3, padding=1, groups=C),
        nn.BatchNorm2d(C),
        nn.ReLU(),
        nn.Conv2d(C, C, 1),
        nn.BatchNorm2d(C),
        nn.ReLU(),
    )


def make_supernet(**kwargs: object) -> SuperNetModule:
    return SuperNetModule(
        {"conv3": conv_bn(3), "conv5": conv_bn(5), "dws": dw_sep(), "skip": nn.Identity()},
        **kwargs,  # type: ignore[arg-type]
    )


class Boom(nn.Module):
    """A candidate that must never run."""

    def forward(self, x: Tensor) -> Tensor:
        raise AssertionError("Boom candidate was called")


def x_input(seed: int = 0) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(3, C, 6, 5, generator=g)


# --------------------------------------------------------------------- construction


def test_init_alpha_uniform_and_names_from_dict() -> None:
    m = make_supernet()
    assert isinstance(m.alpha, nn.Parameter)
    assert m.alpha.tolist() == [0.25] * 4
    assert m.names == ["conv3", "conv5", "dws", "skip"]
    assert isinstance(m.candidates, nn.ModuleDict)
    assert list(m.candidates.keys()) == m.names
    assert m.softmax == "softmax" and m.temperature == 1.0 and m.eval_mode == "argmax"
    assert m.training


def test_list_candidates_named_by_index() -> None:
    m = SuperNetModule([nn.Identity(), nn.ReLU(), nn.Tanh()])
    assert m.names == ["0", "1", "2"]
    torch.testing.assert_close(m.alpha.detach(), torch.full((3,), 1 / 3))
    assert isinstance(m.candidates["1"], nn.ReLU)


def test_alpha_and_weights_in_state_dict() -> None:
    keys = set(make_supernet().state_dict())
    assert "alpha" in keys and "candidates.conv3.0.weight" in keys


@pytest.mark.parametrize(
    ("candidates", "error", "match"),
    [
        ([nn.Identity()], ValueError, "at least 2"),
        ([], ValueError, "at least 2"),
        ([nn.Identity(), "relu"], TypeError, "candidate '1'"),
        (nn.Identity(), TypeError, "list or a name->module dict"),
    ],
)
def test_bad_candidates(candidates: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        SuperNetModule(candidates)  # type: ignore[arg-type]


def test_invalid_settings_raise() -> None:
    m = make_supernet()
    with pytest.raises(ValueError, match=r"allowed values are \['softmax', 'gumbel'"):
        m.softmax = "hard"
    with pytest.raises(ValueError, match="allowed values"):
        make_supernet(softmax="sparsemax")
    for bad in (0, -0.5, float("nan")):
        with pytest.raises(ValueError, match="temperature"):
            m.temperature = bad
    with pytest.raises(ValueError, match=r"\['argmax', 'soft'\]"):
        m.eval_mode = "mean"
    assert m.softmax == "softmax" and m.temperature == 1.0 and m.eval_mode == "argmax"


def test_settings_are_settable() -> None:
    m = make_supernet()
    for mode in MODES:
        m.softmax = mode
        assert m.softmax == mode
    m.temperature = 0.3
    assert m.temperature == 0.3
    assert "hard_gumbel" in repr(m) and "0.3" in repr(m)


# --------------------------------------------------------------------- soft forward


def manual_candidate_outputs(m: SuperNetModule, x: Tensor) -> list[Tensor]:
    return [m.candidates[n](x) for n in m.names]


def test_softmax_forward_equals_manual() -> None:
    torch.manual_seed(0)
    m = make_supernet()
    with torch.no_grad():
        m.alpha.copy_(torch.tensor([0.5, -0.3, 1.2, 0.0]))
    ref = copy.deepcopy(m)
    x = x_input()
    out = m(x)
    theta = torch.softmax(ref.alpha / 1.0, 0)
    expected = sum(t * y for t, y in zip(theta, manual_candidate_outputs(ref, x), strict=True))
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(m.last_theta, theta)


def test_temperature_effect_in_module() -> None:
    m = SuperNetModule([nn.Identity(), nn.Identity()])
    with torch.no_grad():
        m.alpha.copy_(torch.tensor([1.0, 0.0]))
    x = torch.ones(2, 3)
    m.temperature = 1.0
    y1 = m(x)  # both candidates are x: output = x regardless of theta
    torch.testing.assert_close(y1, x)
    p1 = m.probabilities()
    m.temperature = 0.1
    p2 = m.probabilities()
    torch.testing.assert_close(p2, torch.softmax(torch.tensor([10.0, 0.0]), 0))
    assert p2[0] > p1[0]
    m.temperature = 1000.0
    torch.testing.assert_close(m.probabilities(), torch.full((2,), 0.5), atol=1e-3, rtol=0)


def test_gumbel_forward_fixed_seed_equals_manual() -> None:
    torch.manual_seed(0)
    m = make_supernet(softmax="gumbel", temperature=0.5)
    ref = copy.deepcopy(m)
    x = x_input()
    torch.manual_seed(11)
    out = m(x)
    torch.manual_seed(11)
    g = -torch.empty(4).exponential_().log()
    theta = torch.softmax((ref.alpha + g) / 0.5, 0)
    expected = sum(t * y for t, y in zip(theta, manual_candidate_outputs(ref, x), strict=True))
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(m.last_theta, theta)


def test_theta_is_next_forward_weights() -> None:
    m = make_supernet(softmax="softmax", temperature=2.0)
    torch.testing.assert_close(m.theta(), m.probabilities())
    m.softmax = "hard_softmax"
    assert m.theta().tolist() == [1.0, 0.0, 0.0, 0.0]
    m.softmax = "gumbel"
    torch.manual_seed(5)
    t = m.theta()
    torch.manual_seed(5)
    m(x_input())
    torch.testing.assert_close(m.last_theta, t)


# --------------------------------------------------------------------- hard modes


@pytest.mark.parametrize("mode", HARD_MODES)
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_hard_forward_is_selected_candidate(mode: str, seed: int) -> None:
    torch.manual_seed(seed)
    m = SuperNetModule(
        {
            "a": nn.Conv2d(C, C, 3, padding=1),
            "b": nn.Conv2d(C, C, 1),
            "c": nn.Tanh(),
            "d": nn.Identity(),
        },
        softmax=mode,
    )
    with torch.no_grad():
        m.alpha.copy_(torch.randn(4))
    x = x_input(seed)
    out = m(x)
    theta = m.last_theta
    assert theta is not None
    sel = int(theta.argmax())
    assert torch.equal(theta.detach(), F.one_hot(torch.tensor(sel), 4).float())
    if mode == "hard_softmax":
        assert sel == m.argmax()
    assert torch.equal(out, m.candidates[m.names[sel]](x))


@pytest.mark.parametrize("mode", HARD_MODES)
def test_alpha_grad_nonzero_in_hard_modes(mode: str) -> None:
    torch.manual_seed(0)
    m = make_supernet(softmax=mode)
    m(x_input()).square().mean().backward()
    assert m.alpha.grad is not None
    assert m.alpha.grad.abs().sum() > 0


def full_hard_forward(m: SuperNetModule, x: Tensor) -> Tensor:
    """Straightforward reference: every candidate under autograd, sum theta_i * y_i."""
    logits = m.alpha
    if m.softmax == "hard_gumbel":
        logits = logits - torch.empty_like(logits).exponential_().log()
    soft = torch.softmax(logits / m.temperature, 0)
    one_hot = F.one_hot(soft.argmax(), soft.numel()).to(soft.dtype)
    theta = one_hot - soft.detach() + soft
    ys = [m.candidates[n](x) for n in m.names]
    return sum(t * y for t, y in zip(theta, ys, strict=True))


class TwoLayer(nn.Module):
    def __init__(self, mode: str, channels_last_unselected: bool = True) -> None:
        super().__init__()
        kw = {"softmax": mode, "temperature": 0.8,
              "channels_last_unselected": channels_last_unselected}  # fmt: skip
        self.s1 = make_supernet(**kw)
        self.s2 = make_supernet(**kw)
        self.head = nn.Conv2d(C, 2, 1)

    def forward(self, x: Tensor, full: bool = False) -> Tensor:
        for s in (self.s1, self.s2):
            x = full_hard_forward(s, x) if full else s(x)
        return self.head(x)


@pytest.mark.parametrize("mode", HARD_MODES)
@pytest.mark.parametrize("seed", [0, 1, 2, 5, 8])
@pytest.mark.parametrize("random_alpha", [False, True])
@pytest.mark.parametrize("channels_last_unselected", [True, False])
def test_fast_path_gradients_equal_full_computation(
    mode: str, seed: int, random_alpha: bool, channels_last_unselected: bool
) -> None:
    torch.manual_seed(100 + seed)
    fast = TwoLayer(mode, channels_last_unselected)
    if random_alpha:
        with torch.no_grad():
            for s in supernet_modules(fast):
                s.alpha.copy_(torch.randn(4))
    full = copy.deepcopy(fast)
    x = x_input(seed)
    target = torch.randn(3, 2, 6, 5, generator=torch.Generator().manual_seed(seed))

    torch.manual_seed(seed)
    F.mse_loss(fast(x), target).backward()
    torch.manual_seed(seed)
    F.mse_loss(full(x, full=True), target).backward()

    selected = [int(s.last_theta.argmax()) for s in supernet_modules(fast)]  # type: ignore[union-attr]
    for (name, p_fast), (_, p_full) in zip(
        fast.named_parameters(), full.named_parameters(), strict=True
    ):
        assert p_full.grad is not None
        assert p_fast.grad is not None, f"{name}: grad is None, expected zeros"
        torch.testing.assert_close(p_fast.grad, p_full.grad, atol=1e-6, rtol=1e-6, msg=name)
    for s_fast, sel in zip(supernet_modules(fast), selected, strict=True):
        assert s_fast.alpha.grad is not None and s_fast.alpha.grad.abs().sum() > 0
        for i, name in enumerate(s_fast.names):
            for p in s_fast.candidates[name].parameters():
                if i != sel:
                    assert p.grad is not None and not p.grad.any()
    # BatchNorm running statistics: every candidate ran in training mode in both
    for (name, b_fast), (_, b_full) in zip(fast.named_buffers(), full.named_buffers(), strict=True):
        torch.testing.assert_close(b_fast, b_full, atol=1e-6, rtol=1e-6, msg=name)


def input_formats(m: SuperNetModule) -> dict[str, bool]:
    """Run a hard forward; return, per candidate whose first layer ran, whether that
    layer's input was channels_last (and not the default format)."""
    seen: dict[str, bool] = {}
    for name in m.names:
        first = next(iter(m.candidates[name].modules()))
        if isinstance(first, nn.Sequential):
            first = first[0]

        def record(_mod: nn.Module, args: tuple[Tensor, ...], name: str = name) -> None:
            x = args[0]
            channels_last = x.is_contiguous(memory_format=torch.channels_last)
            seen[name] = channels_last and not x.is_contiguous()

        first.register_forward_pre_hook(record)
    m(x_input())
    return seen


def test_unselected_candidates_run_in_channels_last_on_cpu() -> None:
    torch.manual_seed(0)
    m = make_supernet(softmax="hard_softmax")  # selects "conv3" (index 0) at init
    m.candidates["view"] = ViewCandidate()  # a custom forward is never converted
    m.names.append("view")
    with torch.no_grad():
        m.alpha.data = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0])
    seen = input_formats(m)
    # the Identity gets the input as it is: a copy would only cost
    assert seen == {"conv3": False, "conv5": True, "dws": True, "skip": False, "view": False}


def test_channels_last_unselected_off_keeps_the_input_format() -> None:
    torch.manual_seed(0)
    m = make_supernet(softmax="hard_softmax", channels_last_unselected=False)
    assert input_formats(m) == {"conv3": False, "conv5": False, "dws": False, "skip": False}


def test_unselected_dropout_candidate_draws_as_the_full_computation() -> None:
    """A random layer is not converted: its mask, hence alpha's gradient, stays that of
    the full computation under the same seed."""
    torch.manual_seed(0)
    cands = {"a": conv_bn(3), "b": nn.Sequential(nn.Conv2d(C, C, 3, padding=1), nn.Dropout(0.5))}
    fast = SuperNetModule(cands, softmax="hard_softmax")
    with torch.no_grad():
        fast.alpha.data = torch.tensor([1.0, 0.0])  # "a" selected, "b" unselected
    full = copy.deepcopy(fast)
    x = x_input()
    torch.manual_seed(3)
    fast(x).square().sum().backward()
    torch.manual_seed(3)
    full_hard_forward(full, x).square().sum().backward()
    torch.testing.assert_close(fast.alpha.grad, full.alpha.grad, atol=1e-6, rtol=1e-6)


class ViewCandidate(nn.Module):
    """A candidate whose forward views its input (fails on a channels_last tensor)."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.tanh(x.view(x.shape[0], -1)).view_as(x)


def test_fast_path_updates_unselected_batchnorm_stats() -> None:
    torch.manual_seed(0)
    m = make_supernet(softmax="hard_softmax")  # selects "conv3" (index 0) at init
    m(x_input())
    assert m.last_theta is not None and int(m.last_theta.argmax()) == 0
    for name in ("conv3", "conv5", "dws"):
        bn = m.candidates[name][1]
        assert int(bn.num_batches_tracked) == 1
        assert bn.running_mean.abs().sum() > 0


def test_fast_path_grad_accumulates_and_with_inputs_and_autograd_grad() -> None:
    torch.manual_seed(0)
    m = make_supernet(softmax="hard_softmax")
    unselected_w = m.candidates["conv5"][0].weight
    selected_w = m.candidates["conv3"][0].weight
    # existing gradients are kept (zeros are accumulated)
    unselected_w.grad = torch.ones_like(unselected_w)
    m(x_input()).sum().backward()
    assert torch.equal(unselected_w.grad, torch.ones_like(unselected_w))
    # autograd.grad returns zeros for an unselected weight, as the full computation does
    out = m(x_input(1)).sum()
    g_unsel, g_sel, g_alpha = torch.autograd.grad(out, [unselected_w, selected_w, m.alpha])
    assert not g_unsel.any() and g_sel.any() and g_alpha.any()
    # backward restricted to alpha leaves the weights alone
    m.zero_grad(set_to_none=True)
    m(x_input(2)).sum().backward(inputs=[m.alpha])
    assert m.alpha.grad is not None and unselected_w.grad is None


def test_fast_path_with_frozen_alpha_and_inplace_after() -> None:
    torch.manual_seed(0)
    m = make_supernet(softmax="hard_gumbel")
    m.alpha.requires_grad_(False)
    y = nn.ReLU(inplace=True)(m(x_input()))
    y.sum().backward()
    grads = [p.grad for p in m.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)
    assert m.alpha.grad is None


def test_shared_weight_between_candidates_gets_real_gradient() -> None:
    shared = nn.Conv2d(C, C, 1)
    m = SuperNetModule({"a": shared, "b": nn.Sequential(shared, nn.Tanh())}, softmax="hard_softmax")
    m(x_input()).sum().backward()  # "a" selected; "b" shares its weight
    assert shared.weight.grad is not None and shared.weight.grad.any()


# --------------------------------------------------------------------- eval


def test_eval_argmax_runs_only_chosen_candidate() -> None:
    torch.manual_seed(0)
    m = SuperNetModule({"boom": Boom(), "conv": nn.Conv2d(C, C, 1), "boom2": Boom()})
    with torch.no_grad():
        m.alpha.copy_(torch.tensor([0.1, 0.7, 0.2]))
    m.eval()
    assert m.argmax() == 1 and m.chosen() is m.candidates["conv"]
    x = x_input()
    for mode in MODES:
        m.softmax = mode
        assert torch.equal(m(x), m.chosen()(x))
    assert m.last_theta is not None and m.last_theta.tolist() == [0.0, 1.0, 0.0]
    assert m.theta().tolist() == [0.0, 1.0, 0.0]
    m.train()
    with pytest.raises(AssertionError, match="Boom"):
        m(x)


@pytest.mark.parametrize("mode", MODES)
def test_eval_soft_is_noise_free_softmax_mixture(mode: str) -> None:
    torch.manual_seed(0)
    m = make_supernet(softmax=mode, temperature=0.5, eval_mode="soft")
    with torch.no_grad():
        m.alpha.copy_(torch.tensor([0.5, -0.3, 1.2, 0.0]))
    m.eval()
    x = x_input()
    out1, out2 = m(x), m(x)
    assert torch.equal(out1, out2)
    theta = torch.softmax(m.alpha / 0.5, 0)
    expected = sum(t * y for t, y in zip(theta, manual_candidate_outputs(m, x), strict=True))
    torch.testing.assert_close(out1, expected)
    torch.testing.assert_close(m.theta(), theta)


# --------------------------------------------------------------------- ICV, setters


def test_icv_at_init_is_62_5() -> None:
    m = make_supernet()
    assert m.icv().item() == pytest.approx(62.5)
    model = nn.Sequential(make_supernet(), nn.ReLU(), make_supernet())
    assert icv_loss(model).item() == pytest.approx(125.0)
    assert icv_loss(nn.Linear(2, 2)).item() == 0.0


def test_icv_sampled_uses_last_theta() -> None:
    m = make_supernet(softmax="hard_gumbel")
    with pytest.raises(RuntimeError, match="forward"):
        m.icv(sampled=True)
    m(x_input())
    assert m.icv(sampled=True).item() == pytest.approx((1 / 16) / (1 / 4 + 1e-3))
    m.icv(sampled=True).backward()
    assert m.alpha.grad is not None and m.alpha.grad.any()
    assert m.icv().item() == pytest.approx(62.5)


def test_set_softmax_and_temperature_on_model() -> None:
    model = nn.Sequential(make_supernet(), nn.Sequential(nn.ReLU(), make_supernet()))
    assert set_softmax(model, "hard_gumbel") == 2
    assert set_temperature(model, 0.25) == 2
    assert all(
        m.softmax == "hard_gumbel" and m.temperature == 0.25 for m in supernet_modules(model)
    )
    with pytest.raises(ValueError, match="allowed values"):
        set_softmax(nn.Linear(1, 1), "bad")
    with pytest.raises(ValueError, match="temperature"):
        set_temperature(model, -1.0)


# --------------------------------------------------------------------- shape check, fx


@pytest.mark.parametrize("mode", MODES)
def test_mismatched_output_shapes_name_candidates(mode: str) -> None:
    m = SuperNetModule({"valid": nn.Conv2d(C, C, 3, padding=1), "shrink": nn.Conv2d(C, C, 3)})
    m.softmax = mode
    with pytest.raises(ValueError, match=r"'valid': \(3, 4, 6, 5\), 'shrink': \(3, 4, 4, 3\)"):
        m(x_input())
    m.eval_mode = "soft"
    m.eval()
    with pytest.raises(ValueError, match="same shape"):
        m(x_input())


def test_non_tensor_output_is_reported() -> None:
    class Pair(nn.Module):
        def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
            return x, x

    m = SuperNetModule({"id": nn.Identity(), "pair": Pair()})
    with pytest.raises(ValueError, match="'pair': tuple"):
        m(x_input())


def test_fx_trace_with_supernet_as_leaf() -> None:
    class LeafTracer(torch.fx.Tracer):
        def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
            return isinstance(m, SuperNetModule) or super().is_leaf_module(m, qualname)

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(C, C, 1), make_supernet(), nn.ReLU())
    gm = torch.fx.GraphModule(model, LeafTracer().trace(model))
    assert any(n.op == "call_module" and n.target == "1" for n in gm.graph.nodes)
    model.eval()
    gm.eval()
    x = x_input()
    torch.testing.assert_close(gm(x), model(x))


@pytest.mark.parametrize("mode", ["softmax", "gumbel"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_soft_mix_equals_the_product_sum_and_its_gradients(mode: str, dtype) -> None:
    """The fused mixing (one in-place accumulation pass, dot-product gradients for theta)
    computes the plain ``sum_i theta_i * y_i`` and its gradients; an in-place ReLU after the
    module is allowed, as with the plain sum."""
    torch.manual_seed(3)
    fused = make_supernet(softmax=mode, temperature=0.7)
    with torch.no_grad():
        fused.alpha.copy_(torch.randn(4))
    plain = copy.deepcopy(fused)
    x = x_input(1)

    def plain_forward(m: SuperNetModule, inp: Tensor) -> Tensor:
        theta = m.theta()
        ys = [m.candidates[n](inp) for n in m.names]
        return sum(t * y for t, y in zip(theta, ys, strict=True))

    with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
        torch.manual_seed(5)
        out_fused = F.relu(fused(x), inplace=True)
        torch.manual_seed(5)
        out_plain = F.relu(plain_forward(plain, x), inplace=True)
    assert out_fused.dtype == out_plain.dtype
    tol = 1e-6 if dtype == torch.float32 else 1e-2
    torch.testing.assert_close(out_fused, out_plain, atol=tol, rtol=tol)
    out_fused.float().square().mean().backward()
    out_plain.float().square().mean().backward()
    for (name, p_f), (_, p_p) in zip(fused.named_parameters(), plain.named_parameters(),
                                     strict=True):
        torch.testing.assert_close(p_f.grad, p_p.grad, atol=tol, rtol=tol, msg=name)


@pytest.mark.parametrize("mode", HARD_MODES)
def test_hard_mix_under_autocast_keeps_the_plain_sums_dtype(mode: str) -> None:
    """An Identity candidate returns float32 beside bfloat16 convolutions under autocast:
    the mixture is float32, as ``sum_i theta_i * y_i`` would be, whichever is selected."""
    torch.manual_seed(0)
    m = make_supernet(softmax=mode)
    for index in range(len(m.names)):
        with torch.no_grad():
            m.alpha.copy_(torch.nn.functional.one_hot(torch.tensor(index), 4).float() * 50)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = m(x_input(0))
        assert out.dtype == torch.float32
        out.sum().backward()
        assert m.alpha.grad is not None


def test_a_module_pickled_without_the_layout_option_still_runs() -> None:
    m = make_supernet(softmax="hard_gumbel")
    del m.channels_last_unselected  # as unpickled from before the option existed
    assert m.channels_last_unselected is True
    assert m(x_input()).shape == x_input().shape
