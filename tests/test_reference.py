"""The reference against closed-form math: scipy's densities, torch.distributions and values
derived by hand from the paper's equations."""

import math

import numpy as np
import pytest
import torch
from scipy import special, stats

from aevb_fast import reference as R


def _rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_gaussian_kl_by_hand():
    # mu = 0, sigma = 1: q = p, KL = 0.  mu = 1, logvar = 0: 1/2 per dimension.
    assert R.gaussian_kl(torch.zeros(3, 4), torch.zeros(3, 4)).tolist() == [0.0] * 3
    assert R.gaussian_kl(torch.ones(2, 5), torch.zeros(2, 5)).tolist() == [2.5] * 2
    # mu = 0, logvar = log 4: 1/2 (4 - 1 - log 4) per dimension.
    kl = R.gaussian_kl(torch.zeros(1, 1, dtype=torch.float64), torch.full((1, 1), math.log(4), dtype=torch.float64))
    assert kl.item() == pytest.approx(0.5 * (3 - math.log(4)), rel=1e-15)


def test_gaussian_kl_matches_torch_distributions():
    mu, logvar = _rand(6, 9), _rand(6, 9, seed=1)
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    torch.testing.assert_close(R.gaussian_kl(mu, logvar), torch.distributions.kl_divergence(q, p).sum(-1))


def test_log_ratio_matches_scipy_densities():
    mu, logvar, eps = _rand(3, 4, 5), _rand(3, 4, 5, seed=1), _rand(2, 3, 4, 5, seed=2)
    z = R.reparameterize(mu, logvar, eps)
    sigma = np.exp(0.5 * logvar.numpy())
    log_q = stats.norm.logpdf(z.numpy(), mu.numpy(), sigma).sum(-1)
    log_p = stats.norm.logpdf(z.numpy()).sum(-1)
    np.testing.assert_allclose(R.log_ratio(z, eps, logvar).numpy(), log_q - log_p, rtol=1e-12, atol=1e-12)


def test_mc_kl_estimate_converges_to_analytic_kl():
    mu, logvar = _rand(2, 3) * 0.5, _rand(2, 3, seed=1) * 0.5
    eps = _rand(200_000, 2, 3, seed=2)
    mc = R.log_ratio(R.reparameterize(mu, logvar, eps), eps, logvar)
    stderr = mc.std(0) / math.sqrt(eps.shape[0])
    assert ((mc.mean(0) - R.gaussian_kl(mu, logvar)).abs() < 5 * stderr).all()


def test_reparameterize_moments():
    mu, logvar = torch.tensor([0.5, -2.0], dtype=torch.float64), torch.tensor([0.0, math.log(9)], dtype=torch.float64)
    z = R.reparameterize(mu, logvar, _rand(400_000, 2))
    torch.testing.assert_close(z.mean(0), mu, atol=0.02, rtol=0)
    torch.testing.assert_close(z.std(0), torch.tensor([1.0, 3.0], dtype=torch.float64), atol=0.02, rtol=0)


def test_bernoulli_log_prob_matches_the_paper_formula():
    logits, x = _rand(5, 11) * 3, torch.rand(5, 11, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = special.expit(logits.numpy())
    expected = (x.numpy() * np.log(y) + (1 - x.numpy()) * np.log(1 - y)).sum(-1)
    np.testing.assert_allclose(R.bernoulli_log_prob(logits, x).numpy(), expected, rtol=1e-12)


def test_bernoulli_log_prob_is_stable_at_extreme_logits():
    logits = torch.tensor([[100.0, -100.0, 100.0, -100.0]], dtype=torch.float64)
    x = torch.tensor([[1.0, 0.0, 0.0, 1.0]], dtype=torch.float64)
    # log sigmoid(100) ~ -e^-100 twice, then log(1 - sigmoid(100)) = -100 twice.
    assert R.bernoulli_log_prob(logits, x).item() == pytest.approx(-200.0, rel=1e-14)


def test_bernoulli_log_prob_accepts_integer_targets():
    logits = _rand(3, 7)
    x = torch.randint(0, 2, (3, 7), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(
        R.bernoulli_log_prob(logits, x.to(torch.uint8)), R.bernoulli_log_prob(logits, x.double())
    )
    torch.testing.assert_close(R.bernoulli_log_prob(logits, x.bool()), R.bernoulli_log_prob(logits, x.double()))


def test_gaussian_log_prob_matches_scipy():
    x, mean, logvar = _rand(4, 6), _rand(4, 6, seed=1), _rand(4, 6, seed=2)
    expected = stats.norm.logpdf(x.numpy(), mean.numpy(), np.exp(0.5 * logvar.numpy())).sum(-1)
    np.testing.assert_allclose(R.gaussian_log_prob(x, mean, logvar).numpy(), expected, rtol=1e-12)


def test_elbo_estimator_b_and_a():
    log_px, kl = _rand(3, 4), _rand(4, seed=1).abs()
    torch.testing.assert_close(R.elbo(log_px, kl), log_px.mean(0) - kl)
    torch.testing.assert_close(R.elbo(log_px, kl, beta=0.5), log_px.mean(0) - 0.5 * kl)
    ratio = _rand(3, 4, seed=2)
    torch.testing.assert_close(R.elbo(log_px, ratio, beta=2.0), (log_px - 2.0 * ratio).mean(0))


def test_iwae_bound_by_hand():
    log_px, ratio = _rand(1, 5), _rand(1, 5, seed=1)
    # k = 1 is estimator A with one sample.
    torch.testing.assert_close(R.iwae_bound(log_px, ratio), R.elbo(log_px, ratio))
    # Equal weights w: log mean w = log w.
    torch.testing.assert_close(R.iwae_bound(torch.full((7, 2), -3.0), torch.full((7, 2), 1.0)), torch.full((2,), -4.0))
    # k = 2, weights e^0 and e^2: log((1 + e^2) / 2).
    value = R.iwae_bound(torch.tensor([[0.0], [2.0]]), torch.zeros(2, 1)).item()
    assert value == pytest.approx(math.log((1 + math.e**2) / 2), rel=1e-6)


def test_iwae_bound_is_at_least_the_elbo():
    log_px, ratio = _rand(50, 8), _rand(50, 8, seed=1)
    assert (R.iwae_bound(log_px, ratio) >= R.elbo(log_px, ratio)).all()


def test_reduce():
    values = torch.tensor([1.0, 2.0, 6.0])
    assert R.reduce(values, "none") is values
    assert R.reduce(values, "sum").item() == 9.0
    assert R.reduce(values, "mean").item() == 3.0
    with pytest.raises(ValueError, match=r"reduction='avg' is not supported; expected one of none, sum, mean"):
        R.reduce(values, "avg")
