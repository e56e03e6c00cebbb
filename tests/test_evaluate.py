"""Evaluation: estimators A and B agree in expectation, and the importance-sampled marginal
log-likelihood lies above the bound and rises with k, as the importance-weighted bound does."""

import pytest
import torch

from aevb_fast.training.evaluate import lower_bound, marginal_log_likelihood
from aevb_fast.training.models import VAE


@pytest.fixture(scope="module")
def model_and_rows():
    torch.manual_seed(0)
    model = VAE(data_dim=30, hidden_dim=16, latent_dim=3, init_std=0.3)
    rows = (torch.rand(40, 30) * 255).to(torch.uint8)
    return model, rows


def test_estimators_a_and_b_agree(model_and_rows):
    model, rows = model_and_rows
    torch.manual_seed(1)
    b = lower_bound(model, rows, estimator="analytic", n_samples=200)
    a = lower_bound(model, rows, estimator="mc", n_samples=200)
    assert a == pytest.approx(b, abs=0.05 * abs(b))


def test_marginal_likelihood_bounds(model_and_rows):
    model, rows = model_and_rows
    torch.manual_seed(2)
    elbo = lower_bound(model, rows, n_samples=200)
    k1, k100 = (marginal_log_likelihood(model, rows, k=k, pass_samples=700) for k in (1, 100))
    assert k1 == pytest.approx(elbo, abs=0.05 * abs(elbo))  # k = 1 is estimator A
    assert k100 > elbo
    with pytest.raises(ValueError, match=r"k must be a positive int, got 0"):
        marginal_log_likelihood(model, rows, k=0)
    with pytest.raises(ValueError, match=r"estimator='b' is not supported"):
        lower_bound(model, rows, estimator="b")
