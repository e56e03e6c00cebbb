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


# Logits across the normalizer's regimes: its series near 0 (both dtypes' switch points, 1e-3 and
# 0.5, on either side), the closed form, and where 1 - lambda is far below float32's epsilon.
CB_LOGITS = [-60.0, -30.0, -5.0, -0.6, -0.4, -2e-3, -5e-4, 0.0, 1e-7, 5e-4, 2e-3, 0.4, 0.6, 1.0, 5.0, 30.0, 60.0]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_continuous_bernoulli_is_a_density_with_its_mean(dtype):
    # exp(log p) integrates to 1 over [0, 1], and x exp(log p) to the mean, for every logit: the
    # normalizer and the mean by quadrature, each logit in the dtype's own branch of the series.
    from scipy import integrate

    for a in CB_LOGITS:
        logits = torch.tensor([[a]], dtype=dtype)

        def density(x, logits=logits):
            return math.exp(R.continuous_bernoulli_log_prob(logits, torch.tensor([[x]], dtype=dtype)).item())

        points = [1 - 3 / abs(a), 3 / abs(a)] if abs(a) > 3 else None  # the mass near one end
        tolerance = 1e-9 if dtype == torch.float64 else 1e-5
        mass = integrate.quad(density, 0, 1, points=points, epsabs=tolerance / 100)[0]
        assert mass == pytest.approx(1, abs=tolerance), f"mass at logit {a}"
        mean = integrate.quad(lambda x: x * density(x), 0, 1, points=points, epsabs=tolerance / 100)[0]
        assert R.continuous_bernoulli_mean(logits).item() == pytest.approx(mean, abs=tolerance), f"mean at logit {a}"


def test_continuous_bernoulli_log_norm_by_hand():
    # log C(a) = log(a / tanh(a / 2)) where numpy's float64 evaluation is exact to rounding, and its
    # series log 2 + a^2 / 12 - 7 a^4 / 1440 at small a; C is even.
    a = np.array([1e-3, 0.01, 0.4, 0.6, 1.0, 5.0, 30.0, 700.0])
    for sign in (1, -1):
        logits = torch.tensor(sign * a)
        np.testing.assert_allclose(
            R.continuous_bernoulli_log_norm(logits).numpy(), np.log(a / np.tanh(a / 2)), rtol=1e-14
        )
    small = torch.tensor([0.0, 1e-9, -1e-5, 1e-4], dtype=torch.float64)
    expected = math.log(2) + small**2 / 12 - 7 * small**4 / 1440
    torch.testing.assert_close(R.continuous_bernoulli_log_norm(small), expected, rtol=1e-15, atol=0)


def test_continuous_bernoulli_matches_torch_distributions_where_it_is_exact():
    # torch.distributions' log-normalizer is exact away from lambda = 1/2 (where it switches to a
    # Taylor polynomial in lambda on [0.499, 0.501]) and from |a| ~ 30, where it takes lambda
    # rounded to 1 - lambda's few bits; there it is off by up to 0.07 nats in float32.
    logits = torch.cat([_rand(4, 25) * 4, torch.tensor([[-10.0, -0.05, 0.05, 10.0] * 5 + [3.0] * 5])]).clamp(-12, 12)
    logits = torch.where(logits.abs() < 0.01, 0.5, logits)
    x = torch.rand(5, 25, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    expected = torch.distributions.ContinuousBernoulli(logits=logits).log_prob(x).sum(-1)
    torch.testing.assert_close(R.continuous_bernoulli_log_prob(logits, x), expected, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(
        R.continuous_bernoulli_mean(logits), torch.distributions.ContinuousBernoulli(logits=logits).mean
    )


def _mixture(shape, K, seed):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(*shape, K, generator=g, dtype=torch.float64)
    means = torch.rand(*shape, K, generator=g, dtype=torch.float64)
    log_scales = torch.rand(*shape, K, generator=g, dtype=torch.float64) * 3 - 5  # scales e^-5 .. e^-2
    return logits, means, log_scales


def test_discretized_logistic_mixture_sums_to_one_over_the_256_values():
    # Each element's mixture gives the 256 values probabilities that sum to 1 (the fallback bins,
    # far in the tails, hold under 1e-5 each and are approximated to a part in 1e3 of that).
    params = _mixture((3,), 5, 0)
    x = (torch.arange(256, dtype=torch.float64) / 255)[:, None, None]  # [256, 1, 1] against [3, 5]
    log_p = R.discretized_logistic_mixture_log_prob(x, *(p[:, None, :] for p in params))  # [256, 3]
    torch.testing.assert_close(log_p.exp().sum(0), torch.ones(3, dtype=torch.float64), rtol=0, atol=1e-6)


def test_discretized_logistic_mixture_matches_scipy():
    # The mixture's probability of each value from scipy's logistic distribution: bins of width
    # 1/255 with the open edge bins, and where a bin holds 1e-5 or less its density at the middle
    # times the width.
    logits, means, log_scales = (p.numpy() for p in _mixture((40,), 3, 1))
    g = np.random.default_rng(2)
    values = np.concatenate([[0, 255], g.integers(0, 256, 38)])
    x = values / 255
    scale = np.exp(log_scales)
    upper = np.where(values[:, None] == 255, 1.0, stats.logistic.cdf(x[:, None] + 1 / 510, means, scale))
    lower = np.where(values[:, None] == 0, 0.0, stats.logistic.cdf(x[:, None] - 1 / 510, means, scale))
    mass = upper - lower
    interior = (values[:, None] > 0) & (values[:, None] < 255)
    fallback = interior & (mass <= 1e-5)
    mass = np.where(fallback, stats.logistic.pdf(x[:, None], means, scale) / 255, mass)
    assert fallback.any() and (~fallback).any()
    expected = np.log((special.softmax(logits, axis=-1) * mass).sum(-1))
    log_p = R.discretized_logistic_mixture_log_prob(
        torch.tensor(x)[:, None], *(torch.tensor(p)[:, None, :] for p in (logits, means, log_scales))
    )
    np.testing.assert_allclose(log_p.numpy(), expected, rtol=1e-9)


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
