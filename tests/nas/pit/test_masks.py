"""PIT masks against the worked examples and properties of SPEC section 2."""

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lightning_dnas.nas.pit.masks import ChannelMask, TapMask, binarize, dilation_levels


def test_binarize_is_exact_and_straight_through():
    theta = torch.tensor([0.7, 0.3, 0.5, 0.5000001, 1.9], requires_grad=True)
    out = binarize(theta)
    assert out.tolist() == [1.0, 0.0, 0.0, 1.0, 1.0]
    out.sum().backward()
    assert theta.grad.tolist() == [1.0] * 5


def test_channel_mask_keeps_last_channel_alive():
    mask = ChannelMask(4)
    with torch.no_grad():
        mask.alpha.copy_(torch.tensor([-0.9, 0.2, 0.6, 0.0]))
    assert mask.theta().tolist() == pytest.approx([0.9, 0.2, 0.6, 1.0])
    assert mask().tolist() == [1.0, 0.0, 1.0, 1.0]
    assert mask.kept().tolist() == [0, 2, 3]
    mask.theta().sum().backward()
    assert mask.alpha.grad.tolist() == [-1.0, 1.0, 1.0, 0.0]


def test_receptive_field_worked_example():
    taps = TapMask(3, train_dilation=False)
    with torch.no_grad():
        taps.beta.copy_(torch.tensor([0.25, 0.4, 0.4]))
    assert taps.theta_beta().tolist() == pytest.approx([0.25, 0.65, 1.65])
    assert taps().tolist() == [0.0, 1.0, 1.0]
    assert taps.kept_taps() == [1, 2]


def test_dilation_worked_example_k3():
    taps = TapMask(3, train_rf=False)
    with torch.no_grad():
        taps.gamma.copy_(torch.tensor([0.2, 0.5]))
    assert taps.theta_gamma().tolist() == pytest.approx([1.2, 0.2, 1.2])
    assert taps().tolist() == [1.0, 0.0, 1.0]


def test_dilation_k5_coarsest_only_gives_two_taps_four_apart():
    taps = TapMask(5)
    with torch.no_grad():
        taps.gamma.copy_(torch.tensor([0.0, 0.0, 0.3]))
    assert taps.kept_taps() == [0, 4]


def test_dilation_counts_from_the_most_recent_tap():
    # K=6: tap j back from the most recent is kept at dilation 2 iff j is even, so kernel
    # indices 5, 3, 1 survive (PLiNIO counts from the oldest and would keep 0, 2, 4).
    taps = TapMask(6)
    with torch.no_grad():
        taps.gamma.copy_(torch.tensor([0.0, 1.0, 1.0]))
    assert taps.kept_taps() == [1, 3, 5]


@pytest.mark.parametrize("k", range(2, 10))
def test_soft_kernel_is_k_at_init_and_differentiable(k):
    taps = TapMask(k)
    k_eff = taps.soft_taps()
    assert k_eff.item() == pytest.approx(k, abs=1e-6)
    assert len(taps.gamma if taps.gamma is not None else []) == (dilation_levels(k) if k > 2 else 0)
    k_eff.backward()
    assert taps.beta.grad is not None and taps.beta.grad[:-1].abs().sum() > 0
    if taps.gamma is not None:
        assert taps.gamma.grad[:-1].abs().sum() > 0


@settings(max_examples=200, deadline=None)
@given(
    k=st.integers(2, 9),
    beta=st.lists(st.floats(-2, 2), min_size=9, max_size=9),
    gamma=st.lists(st.floats(-2, 2), min_size=4, max_size=4),
)
def test_kept_taps_are_a_regular_suffix_with_the_most_recent(k, beta, gamma):
    taps = TapMask(k)
    with torch.no_grad():
        taps.beta.copy_(torch.tensor(beta[:k]))
        if taps.gamma is not None:
            taps.gamma.copy_(torch.tensor(gamma[: taps.gamma.numel()]))
    kept = taps.kept_taps()
    assert kept[-1] == k - 1
    assert sum(taps().tolist()) == len(kept)  # the hard cost counts exactly the kept taps
    steps = {b - a for a, b in itertools.pairwise(kept)}
    assert len(steps) <= 1 and all(s & (s - 1) == 0 for s in steps)  # one power-of-two step
