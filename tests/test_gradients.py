"""The gradient estimators of the bounds with per-sample log q(z|x) (aevb_fast.GRADIENTS): "stl"
against its definition (log q(z|x) at stopped mu and logvar, through autograd), "dreg" against its
definition (Tucker et al. 2018, eq. 7: the squared normalized weights on the encoder's path
gradient, the standard gradient for the decoder), both unbiased where the theory says so (the mean
over many draws against the standard estimator's, within standard errors), and the encoder
gradient's signal-to-noise ratio against k (Rainforth et al. 2018: it falls like 1/sqrt(k) for the
standard IWAE estimator, and rises for DReG).

Draws: one datapoint's (mu, logvar) repeated in R rows, each row drawing its own noise, so that the
gradient with respect to each row is one draw of the estimator."""

import math

import pytest
import torch
from helpers import DEVICE_BACKENDS

import aevb_fast
from aevb_fast import reference as R
from benchmarks.gradient_snr import snr

Z, D = 3, 8


def _problem(rows: int, seed: int = 0):
    """(mu, logvar) [rows, Z] leaves of one datapoint repeated, x [rows, D], and a Bernoulli decoder."""
    g = torch.Generator().manual_seed(seed)
    mu = (torch.randn(1, Z, generator=g, dtype=torch.float64) * 0.5).expand(rows, Z).clone().requires_grad_()
    logvar = (torch.randn(1, Z, generator=g, dtype=torch.float64) * 0.3 - 1).expand(rows, Z).clone().requires_grad_()
    weight = torch.randn(D, Z, generator=g, dtype=torch.float64)
    bias = torch.randn(D, generator=g, dtype=torch.float64)
    x = torch.rand(1, D, generator=g, dtype=torch.float64).expand(rows, D)

    def decode(z):
        return z @ weight.T + bias

    return mu, logvar, x, decode, (weight, bias)


def _draws(gradient, k, rows=4000, iwae=True, backend="cpu", seed=1):
    """Per-row encoder gradients (d/dmu, d/dlogvar) [rows, Z] of the bound (iwae or elbo) with k samples."""
    mu, logvar, x, decode, _ = _problem(rows)
    loss = aevb_fast.elbo_loss(
        decode,
        x,
        mu,
        logvar,
        n_samples=k,
        estimator="mc",
        iwae=iwae,
        gradient=gradient,
        reduction="sum",
        seed=seed,
        backend=backend,
    )
    return torch.autograd.grad(loss, (mu, logvar))


@pytest.mark.parametrize("device, backend", DEVICE_BACKENDS)
def test_stl_is_log_q_at_stopped_encoder_outputs(device, backend):
    # The same eps (the kernels' noise is reparameterize(0, 0)), z through autograd, log q with mu and
    # logvar detached: its gradients are the stl kernels'.
    mu, logvar, *_ = _problem(6)
    mu, logvar = mu.detach().to(device).requires_grad_(), logvar.detach().to(device).requires_grad_()
    g = torch.Generator().manual_seed(2)
    grad_z, grad_kl = torch.randn(4, 6, Z, generator=g, dtype=torch.float64), torch.randn(4, 6, generator=g)
    z, kl = aevb_fast.reparameterize_kl(mu, logvar, 4, estimator="mc", gradient="stl", seed=7, backend=backend)
    fused = torch.autograd.grad((z * grad_z.to(device)).sum() + (kl * grad_kl.to(device, kl.dtype)).sum(), (mu, logvar))
    zeros = torch.zeros(6, Z, dtype=torch.float64)
    eps = aevb_fast.reparameterize(zeros, zeros, 4, seed=7, backend="cpu")
    m, v = mu.detach().cpu().requires_grad_(), logvar.detach().cpu().requires_grad_()
    z_ref = R.reparameterize(m, v, eps)
    kl_ref = R.log_ratio(z_ref, (z_ref - m.detach()) * torch.exp(-0.5 * v.detach()), v.detach())
    expected = torch.autograd.grad((z_ref * grad_z).sum() + (kl_ref * grad_kl.double()).sum(), (m, v))
    for name, a, b in zip(("d/dmu", "d/dlogvar"), fused, expected):
        torch.testing.assert_close(a.cpu(), b, rtol=1e-5, atol=1e-5, msg=name)
    torch.testing.assert_close(kl.cpu(), kl_ref.detach(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("device, backend", DEVICE_BACKENDS)
def test_dreg_is_its_definition(device, backend):
    # Tucker et al. (2018), eq. 7, written out with autograd: the encoder gets
    # sum_l w_l^2 d/dz_l log w_l (log q at stopped mu and logvar) through z, the decoder the standard
    # IWAE gradient sum_l w_l d/dtheta log w_l.
    mu, logvar, x, _, (weight, bias) = _problem(5)
    weight, bias = weight.clone().requires_grad_(), bias.clone().requires_grad_()

    def decode(z):
        return z @ weight.to(z.device).T + bias.to(z.device)

    params = (mu.detach().to(device).requires_grad_(), logvar.detach().to(device).requires_grad_())
    loss = aevb_fast.elbo_loss(
        decode,
        x.to(device),
        *params,
        n_samples=6,
        estimator="mc",
        iwae=True,
        gradient="dreg",
        reduction="sum",
        seed=4,
        backend=backend,
    )
    fused = torch.autograd.grad(loss, (*params, weight, bias))
    zeros = torch.zeros(5, Z, dtype=torch.float64)
    eps = aevb_fast.reparameterize(zeros, zeros, 6, seed=4, backend="cpu")
    m, v = mu.detach().requires_grad_(), logvar.detach().requires_grad_()
    z = R.reparameterize(m, v, eps)
    log_w = R.bernoulli_log_prob(z @ weight.T + bias, x) - R.log_ratio(
        z, (z - m.detach()) * torch.exp(-0.5 * v.detach()), v.detach()
    )
    w = torch.softmax(log_w.detach(), 0)
    encoder = torch.autograd.grad(-(w**2 * log_w).sum(), (m, v), retain_graph=True)
    decoder = torch.autograd.grad(-(torch.logsumexp(log_w, 0) - math.log(6)).sum(), (weight, bias))
    for name, a, b in zip(("d/dmu", "d/dlogvar", "d/dweight", "d/dbias"), fused, (*encoder, *decoder)):
        torch.testing.assert_close(a.cpu(), b, rtol=1e-5, atol=1e-5, msg=name)


def _mean_and_error(draws: torch.Tensor):
    return draws.mean(0), draws.std(0) / math.sqrt(draws.shape[0])


@pytest.mark.parametrize(
    "gradient, iwae, k",
    [("stl", False, 1), ("stl", False, 5), ("dreg", True, 5), ("dreg", True, 1)],
    ids=["stl-elbo-1", "stl-elbo-5", "dreg-iwae-5", "dreg-iwae-1"],
)
def test_unbiased(gradient, iwae, k):
    # On the same draws the estimator and the standard one differ by terms of mean zero: the mean
    # difference lies within 4.5 standard errors of 0, for every coordinate (6 of them).
    standard = _draws("standard", k, iwae=iwae)
    other = _draws(gradient, k, iwae=iwae)
    for a, b in zip(other, standard):
        mean, error = _mean_and_error(a - b)
        assert (mean.abs() < 4.5 * error).all(), f"{gradient}: mean difference {mean} against errors {error}"
    # ...while each draw differs: the estimators are not the same one.
    assert not torch.allclose(other[0], standard[0])


def test_signal_to_noise_ratio_against_k():
    # Rainforth et al. (2018), in their Gaussian problem (benchmarks/gradient_snr.py): the standard
    # IWAE encoder gradient's SNR falls like 1/sqrt(k) (by 4 from k = 4 to 64), DReG's rises like
    # sqrt(k). Measured: 0.044 -> 0.0098, 0.44 -> 1.53.
    standard = {k: snr("standard", k, 20_000) for k in (4, 64)}
    dreg = {k: snr("dreg", k, 20_000) for k in (4, 64)}
    assert standard[64] < 0.5 * standard[4], standard
    assert dreg[64] > 2 * dreg[4], dreg


def test_gradient_options_are_checked():
    mu, logvar, x, decode, _ = _problem(2)
    with pytest.raises(
        ValueError,
        match=r"gradient='stl' changes the gradient of the per-sample log q\(z\|x\): it needs estimator='mc'",
    ):
        aevb_fast.elbo_loss(decode, x, mu, logvar, gradient="stl")
    with pytest.raises(
        ValueError, match=r"gradient='dreg' is an estimator of the importance-weighted bound's gradient"
    ):
        aevb_fast.elbo_loss(decode, x, mu, logvar, estimator="mc", gradient="dreg")
    with pytest.raises(ValueError, match=r"gradient='score' is not supported"):
        aevb_fast.elbo_loss(decode, x, mu, logvar, estimator="mc", gradient="score")
    with pytest.raises(ValueError, match=r"gradient='dreg' is not supported"):
        aevb_fast.reparameterize_kl(mu, logvar, estimator="mc", gradient="dreg")
    with pytest.raises(ValueError, match=r"gradient='dreg' needs z \[L, \.\.\., Z\] beside log_ratio"):
        aevb_fast.iwae_bound(torch.zeros(3, 2), torch.zeros(3, 2), gradient="dreg")
