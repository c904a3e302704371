"""MNIST-1D generated locally: shapes, dtypes, labels, determinism, no network access."""

import random

import mnist1d.data
import numpy as np
import pytest
import requests
import torch

from lightning_dnas.data.mnist1d import mnist1d_tensors, validation_split


def test_shapes_dtypes_and_labels() -> None:
    x_train, y_train, x_test, y_test = mnist1d_tensors(num_samples=500, seed=3)
    assert x_train.shape == (400, 1, 40) and x_test.shape == (100, 1, 40)
    assert y_train.shape == (400,) and y_test.shape == (100,)
    assert x_train.dtype == x_test.dtype == torch.float32
    assert y_train.dtype == y_test.dtype == torch.int64
    labels = torch.cat([y_train, y_test])
    assert int(labels.min()) >= 0 and int(labels.max()) <= 9
    assert labels.bincount(minlength=10).tolist() == [50] * 10  # balanced classes
    assert torch.isfinite(x_train).all()


def test_train_split() -> None:
    x_train, _, x_test, _ = mnist1d_tensors(num_samples=200, train_split=0.5)
    assert len(x_train) == len(x_test) == 100


def test_deterministic_for_a_seed_and_different_across_seeds() -> None:
    a = mnist1d_tensors(num_samples=200, seed=7)
    b = mnist1d_tensors(num_samples=200, seed=7)
    c = mnist1d_tensors(num_samples=200, seed=8)
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    assert not torch.equal(a[0], c[0])


def test_global_random_state_untouched() -> None:
    random.seed(123)
    np.random.seed(123)
    expected = (random.random(), np.random.rand())
    random.seed(123)
    np.random.seed(123)
    mnist1d_tensors(num_samples=100)
    assert (random.random(), np.random.rand()) == expected


def test_no_network_access(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(requests, "get", offline)
    monkeypatch.setattr(mnist1d.data, "get_dataset", offline)
    x_train, _, _, _ = mnist1d_tensors(num_samples=100)
    assert x_train.shape == (80, 1, 40)


def test_validation_split() -> None:
    x, y = torch.arange(20.0).view(20, 1, 1), torch.arange(20)
    _, y_tr, x_val, y_val = validation_split(x, y, fraction=0.1)
    assert y_tr.tolist() == list(range(18)) and y_val.tolist() == [18, 19]
    assert torch.equal(x_val.flatten(), y_val.float())
    with pytest.raises(ValueError):
        validation_split(x[:1], y[:1])


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        mnist1d_tensors(num_samples=5)
    with pytest.raises(ValueError):
        mnist1d_tensors(num_samples=100, train_split=1.0)
