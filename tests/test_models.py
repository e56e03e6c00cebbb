"""The paper's models: shapes, initialisation, the loss against a hand-written bound, and a few
Adagrad steps that lower it."""

import pytest
import torch

import aevb_fast
from aevb_fast import reference as R
from aevb_fast.training.models import VAE


def test_shapes_and_initialisation():
    torch.manual_seed(0)
    model = VAE(data_dim=784, hidden_dim=500, latent_dim=20)
    assert model.encoder.hidden.weight.shape == (500, 784) and model.decoder.logits.weight.shape == (784, 500)
    weights = torch.cat([p.flatten() for p in model.parameters()])
    assert weights.std().item() == pytest.approx(0.01, rel=0.02) and abs(weights.mean().item()) < 1e-4
    gaussian = VAE(data_dim=560, hidden_dim=200, latent_dim=10, likelihood="gaussian")
    mean, logvar = gaussian.decoder(torch.zeros(3, 10))
    assert mean.shape == logvar.shape == (3, 560) and ((mean > 0) & (mean < 1)).all()


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_loss_is_the_negative_bound(likelihood):
    torch.manual_seed(1)
    model = VAE(data_dim=12, hidden_dim=8, latent_dim=3, likelihood=likelihood, init_std=0.3)
    x = torch.rand(5, 12)
    loss = model(x, n_samples=2, reduction="none", backend="cpu")
    mu, logvar = model.encoder(x)
    assert loss.shape == (5,)
    # The same bound with the noise pinned: eps from the kernels' generator, the rest by hand.
    torch.manual_seed(2)
    pinned = model(x, n_samples=2, reduction="none", backend="cpu")
    torch.manual_seed(2)
    seed = int(torch.randint(2**63 - 1, (1,)).item())
    eps = aevb_fast.reparameterize(torch.zeros_like(mu), torch.zeros_like(mu), 2, seed=seed, backend="cpu")
    recon = model.decoder(R.reparameterize(mu, logvar, eps))
    log_px = R.bernoulli_log_prob(recon, x) if likelihood == "bernoulli" else R.gaussian_log_prob(x, *recon)
    torch.testing.assert_close(pinned, -R.elbo(log_px, R.gaussian_kl(mu, logvar)))


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
@pytest.mark.parametrize(
    "estimator, iwae, reduction, options",
    [
        ("analytic", False, "mean", {}),
        ("mc", False, "sum", {}),
        ("mc", True, "mean", {}),
        ("analytic", False, "none", {}),
        ("analytic", False, "sum", dict(beta=0.3, free_bits=0.2)),
        ("mc", False, "mean", dict(beta=2.0, gradient="stl")),
        ("mc", True, "sum", dict(gradient="dreg")),
        ("mc", True, "none", dict(gradient="stl")),
    ],
)
def test_fused_head_gives_the_same_bound_and_gradients(likelihood, estimator, iwae, reduction, options):
    torch.manual_seed(1)
    model = VAE(data_dim=12, hidden_dim=8, latent_dim=3, likelihood=likelihood, init_std=0.3)
    x = torch.rand(5, 12)
    results = []
    for fused in (False, True):
        torch.manual_seed(2)
        loss = model(x, n_samples=3, estimator=estimator, iwae=iwae, reduction=reduction, fused_head=fused, **options)
        results.append((loss, torch.autograd.grad(loss.sum(), list(model.parameters()))))
    (plain, plain_grads), (fused, fused_grads) = results
    torch.testing.assert_close(fused, plain)
    for name, a, b in zip(dict(model.named_parameters()), fused_grads, plain_grads):
        torch.testing.assert_close(a, b, msg=name)


def test_fused_head_by_default_where_it_saves_memory(monkeypatch):
    calls = []
    monkeypatch.setattr(
        VAE, "_log_likelihood", lambda self, h, x, reduction, backend: calls.append(h.shape) or h.new_zeros(())
    )
    small, wide = VAE(data_dim=784, hidden_dim=500, latent_dim=2), VAE(data_dim=4096, hidden_dim=8, latent_dim=2)
    small(torch.rand(100, 784))  # the paper's minibatch: its logits fit one chunk
    wide(torch.rand(1200, 4096))  # 1200 x 4096 logits > 2^22 elements: chunked
    assert calls == [(1, 1200, 8)]


def test_adagrad_lowers_the_loss():
    torch.manual_seed(3)
    # Four binary prototypes: data a latent variable explains, unlike independent coin flips.
    prototypes = (torch.rand(4, 20) > 0.5).float()
    model, x = VAE(data_dim=20, hidden_dim=16, latent_dim=2), prototypes[torch.randint(4, (64,))]
    optimizer = torch.optim.Adagrad(model.parameters(), lr=0.1)
    losses = []
    for _ in range(30):
        optimizer.zero_grad()
        loss = model(x)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 1.0


def test_beta_and_free_bits_are_the_kl_terms_weight_and_floor():
    # beta weighs the KL term; free bits replace it by sum_j max(lambda, mean_b KL_bj) of the minibatch.
    torch.manual_seed(1)
    model = VAE(data_dim=12, hidden_dim=8, latent_dim=3, init_std=0.3)
    x = torch.rand(5, 12)
    mu, logvar = model.encoder(x)
    losses = {}
    for name, options in {"plain": {}, "beta": dict(beta=0.25), "free bits": dict(free_bits=0.1)}.items():
        torch.manual_seed(2)
        losses[name] = model(x, reduction="sum", **options)
    kl = R.gaussian_kl(mu, logvar)
    torch.testing.assert_close(losses["beta"], losses["plain"] - 0.75 * kl.sum())
    units = (0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar)).mean(0)
    assert (units < 0.1).any() and (units > 0.1).any()  # both sides of the floor
    torch.testing.assert_close(losses["free bits"], losses["plain"] - kl.sum() + 5 * units.clamp(min=0.1).sum())


def test_bad_settings_are_rejected():
    with pytest.raises(ValueError, match=r"likelihood='poisson' is not supported"):
        VAE(likelihood="poisson")
    with pytest.raises(ValueError, match=r"latent_dim must be a positive int, got 0"):
        VAE(latent_dim=0)
    model, x = VAE(data_dim=4, hidden_dim=3, latent_dim=2), torch.rand(2, 4)
    for fused in (False, True):
        with pytest.raises(ValueError, match=r"gradient='dreg' .*iwae"):
            model(x, estimator="mc", gradient="dreg", fused_head=fused)
        with pytest.raises(ValueError, match=r"free_bits needs estimator='analytic'"):
            model(x, estimator="mc", free_bits=0.1, fused_head=fused)
        with pytest.raises(ValueError, match=r"beta must be a finite number >= 0, got -1"):
            model(x, beta=-1, fused_head=fused)
