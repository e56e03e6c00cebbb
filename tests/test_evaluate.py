"""Evaluation: estimators A and B agree in expectation, the importance-sampled marginal
log-likelihood lies above the bound and rises with k, as the importance-weighted bound does; each
estimate carries its standard error over the datapoints and bits per dimension, and a seed fixes
its noise."""

import math

import pytest
import torch

from aevb_fast.training.evaluate import Estimate, lower_bound, marginal_log_likelihood
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
    b = lower_bound(model, rows, estimator="analytic", n_samples=200).nats
    a = lower_bound(model, rows, estimator="mc", n_samples=200).nats
    assert a == pytest.approx(b, abs=0.05 * abs(b))


def test_marginal_likelihood_bounds(model_and_rows):
    model, rows = model_and_rows
    torch.manual_seed(2)
    elbo = lower_bound(model, rows, n_samples=200).nats
    k1, k100 = (marginal_log_likelihood(model, rows, k=k, pass_samples=700).nats for k in (1, 100))
    assert k1 == pytest.approx(elbo, abs=0.05 * abs(elbo))  # k = 1 is estimator A
    assert k100 > elbo
    with pytest.raises(ValueError, match=r"k must be a positive int, got 0"):
        marginal_log_likelihood(model, rows, k=0)
    with pytest.raises(ValueError, match=r"estimator='b' is not supported"):
        lower_bound(model, rows, estimator="b")


def test_standard_error_bits_per_dim_and_seed(model_and_rows):
    # The estimate is the mean of the datapoints' values and its error their sample std / sqrt(N):
    # in one pass, under the seed, the model's own per-row bounds.
    model, rows = model_and_rows
    estimate = lower_bound(model, rows, n_samples=7, seed=5)
    torch.manual_seed(5)
    with torch.no_grad():
        values = -model(rows.float() / 255, n_samples=7, reduction="none").double()
    assert estimate.nats == pytest.approx(values.mean().item(), rel=1e-12)
    assert estimate.standard_error == pytest.approx(values.std().item() / math.sqrt(40), rel=1e-9)
    assert estimate.bits_per_dim == pytest.approx(-estimate.nats / (30 * math.log(2)))
    assert estimate.bits_per_dim_error == pytest.approx(estimate.standard_error / (30 * math.log(2)))
    assert math.isnan(Estimate.of(torch.tensor([1.0]), 30).standard_error)
    # Seeded, the same estimate again (in other passes too: the chunks fold in exactly), another
    # seed another one, and torch's generator is left alone.
    marginal = marginal_log_likelihood(model, rows, k=50, seed=3)
    assert marginal == marginal_log_likelihood(model, rows, k=50, seed=3)
    assert marginal != marginal_log_likelihood(model, rows, k=50, seed=4)
    state = torch.random.get_rng_state()
    lower_bound(model, rows, seed=1)
    assert torch.equal(state, torch.random.get_rng_state())
    with pytest.raises(ValueError, match=r"seed must be an int in \[0, 2\*\*63\) or None, got -1"):
        lower_bound(model, rows, seed=-1)
