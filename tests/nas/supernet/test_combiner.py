"""Combiner maths (theta from alpha, ICV) and temperature schedules."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lightning_dnas.nas.supernet import (
    HARD_MODES,
    MODES,
    ConstantTemperature,
    ExponentialTemperature,
    LinearTemperature,
    gumbel_noise,
    icv,
    mixing_weights,
    temperature_schedule,
)
from lightning_dnas.nas.supernet.combiner import validate_mode, validate_temperature

ALPHA = torch.tensor([0.3, -1.2, 0.9, 0.1])


def test_modes_listed() -> None:
    assert MODES == ("softmax", "gumbel", "hard_softmax", "hard_gumbel")
    assert set(HARD_MODES) <= set(MODES)


def test_invalid_mode_lists_allowed_values() -> None:
    with pytest.raises(ValueError, match=r"'softmax', 'gumbel', 'hard_softmax', 'hard_gumbel'"):
        validate_mode("gumble")
    with pytest.raises(ValueError, match="allowed values"):
        mixing_weights(ALPHA, "hard", 1.0)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf"), "abc", None, True])
def test_invalid_temperature(bad: object) -> None:
    with pytest.raises(ValueError, match="temperature"):
        validate_temperature(bad)  # type: ignore[arg-type]


def test_softmax_matches_manual() -> None:
    theta = mixing_weights(ALPHA, "softmax", 1.0)
    e = [math.exp(a) for a in ALPHA.tolist()]
    expected = torch.tensor([v / sum(e) for v in e])
    torch.testing.assert_close(theta, expected)


def test_temperature_divides_logits() -> None:
    for t in (0.1, 0.5, 2.0, 10.0):
        torch.testing.assert_close(
            mixing_weights(ALPHA, "softmax", t), torch.softmax(ALPHA / t, dim=0)
        )
    # lower temperature -> more polarised
    assert mixing_weights(ALPHA, "softmax", 0.1).max() > mixing_weights(ALPHA, "softmax", 1.0).max()
    assert mixing_weights(ALPHA, "softmax", 100.0).max() < 0.26


def test_gumbel_noise_matches_torch_sampler() -> None:
    torch.manual_seed(3)
    g = gumbel_noise(ALPHA)
    torch.manual_seed(3)
    e = torch.empty(4).exponential_()
    torch.testing.assert_close(g, -e.log())


@pytest.mark.parametrize("t", [0.5, 1.0, 3.0])
def test_gumbel_fixed_seed_equals_manual_and_torch(t: float) -> None:
    torch.manual_seed(7)
    theta = mixing_weights(ALPHA, "gumbel", t)
    torch.manual_seed(7)
    u_noise = -torch.empty(4).exponential_().log()
    manual = torch.softmax((ALPHA + u_noise) / t, dim=0)
    torch.testing.assert_close(theta, manual)
    torch.manual_seed(7)
    torch.testing.assert_close(theta, F.gumbel_softmax(ALPHA, tau=t))
    # explicit noise is used as given
    torch.testing.assert_close(mixing_weights(ALPHA, "gumbel", t, noise=u_noise), manual)


def test_gumbel_differs_between_draws() -> None:
    torch.manual_seed(0)
    a = mixing_weights(ALPHA, "gumbel", 1.0)
    b = mixing_weights(ALPHA, "gumbel", 1.0)
    assert not torch.equal(a, b)


@pytest.mark.parametrize("mode", HARD_MODES)
def test_hard_modes_exact_one_hot_with_straight_through_gradient(mode: str) -> None:
    noise = torch.tensor([0.0, 3.0, -0.5, 0.2])
    t = 0.7
    alpha = ALPHA.clone().requires_grad_(True)
    theta = mixing_weights(alpha, mode, t, noise=noise)
    logits = (ALPHA + noise) / t if mode == "hard_gumbel" else ALPHA / t
    expected_index = int(logits.argmax())
    assert torch.equal(theta.detach(), F.one_hot(torch.tensor(expected_index), 4).float())
    if mode == "hard_gumbel":
        assert expected_index == 1  # the noise changed the choice
    # gradient = gradient through softmax(logits)
    w = torch.tensor([1.0, -2.0, 0.5, 3.0])
    (theta * w).sum().backward()
    alpha_ref = ALPHA.clone().requires_grad_(True)
    soft = torch.softmax(((alpha_ref + noise) if mode == "hard_gumbel" else alpha_ref) / t, 0)
    (soft * w).sum().backward()
    assert alpha.grad is not None and alpha.grad.abs().sum() > 0
    torch.testing.assert_close(alpha.grad, alpha_ref.grad)


def test_hard_softmax_ties_pick_first_index() -> None:
    theta = mixing_weights(torch.full((4,), 0.25), "hard_softmax", 1.0)
    assert theta.tolist() == [1.0, 0.0, 0.0, 0.0]


def test_icv_values() -> None:
    assert icv(torch.full((4,), 0.25)).item() == pytest.approx(62.5)
    # one-hot: mean 1/4, unbiased var = (9/16 + 3/16) / 3 = 1/4
    assert icv(torch.tensor([1.0, 0.0, 0.0, 0.0])).item() == pytest.approx(
        (1 / 16) / (1 / 4 + 1e-3)
    )
    # eps and unbiased variance: theta = [0.2, 0.8], mean 0.5, var = 2 * 0.09 / 1 = 0.18
    assert icv(torch.tensor([0.2, 0.8]), eps=0.02).item() == pytest.approx(0.25 / 0.2)


def test_icv_is_differentiable_and_needs_two_entries() -> None:
    alpha = ALPHA.clone().requires_grad_(True)
    icv(torch.softmax(alpha, 0)).backward()
    assert alpha.grad is not None and alpha.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="at least two"):
        icv(torch.ones(1))


# ---------------------------------------------------------------------- schedules


def test_constant_schedule() -> None:
    s = ConstantTemperature(2.5)
    assert [s(i) for i in (0, 1, 1000)] == [2.5, 2.5, 2.5]


def test_linear_schedule_hand_values() -> None:
    s = LinearTemperature(5.0, 1.0, 4)  # -1 per step
    assert [s(i) for i in range(7)] == pytest.approx([5.0, 4.0, 3.0, 2.0, 1.0, 1.0, 1.0])
    up = LinearTemperature(0.5, 1.5, 10)
    assert up(3) == pytest.approx(0.8)


def test_exponential_schedule_hand_values() -> None:
    s = ExponentialTemperature(8.0, 1.0, 3)  # x 1/2 per step
    assert [s(i) for i in range(5)] == pytest.approx([8.0, 4.0, 2.0, 1.0, 1.0])
    s2 = ExponentialTemperature(1.0, 0.01, 4)  # x 10^(-1/2) per step
    assert s2(1) == pytest.approx(10**-0.5)
    assert s2(2) == pytest.approx(0.1)


def test_schedule_by_kind() -> None:
    assert temperature_schedule("constant", t=3.0)(9) == 3.0
    assert temperature_schedule("linear", t0=2.0, t1=1.0, steps=2)(1) == pytest.approx(1.5)
    assert temperature_schedule("exponential", t0=4.0, t1=1.0, steps=2)(1) == pytest.approx(2.0)
    with pytest.raises(
        ValueError, match=r"allowed kinds are \['constant', 'linear', 'exponential'\]"
    ):
        temperature_schedule("cosine", t0=1.0, t1=0.1, steps=10)
    with pytest.raises(ValueError, match="bad arguments"):
        temperature_schedule("linear", t=1.0)


@pytest.mark.parametrize(
    "make",
    [
        lambda: ConstantTemperature(0.0),
        lambda: LinearTemperature(1.0, -1.0, 10),
        lambda: LinearTemperature(1.0, 0.5, 0),
        lambda: ExponentialTemperature(0.0, 1.0, 10),
        lambda: ExponentialTemperature(1.0, 0.5, 2.5),
    ],
)
def test_schedule_invalid_arguments(make) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError):
        make()


def test_schedule_negative_step() -> None:
    with pytest.raises(ValueError, match="step"):
        LinearTemperature(1.0, 0.5, 10)(-1)
