"""aevb_fast: fused kernels for the objective of Auto-Encoding Variational Bayes (the VAE's ELBO).

    import aevb_fast
    z = aevb_fast.reparameterize(mu, logvar)
    loss = aevb_fast.vae_loss(logits, x, mu, logvar, reduction="sum")
    optimizer = aevb_fast.optim.Adagrad(model.parameters(), lr=0.02, weight_decay=1 / N)
"""

from . import optim
from ._version import __version__
from .functional import (
    bernoulli_log_prob,
    elbo_loss,
    gaussian_kl,
    gaussian_log_prob,
    linear_bernoulli_log_prob,
    linear_gaussian_log_prob,
    reparameterize,
    reparameterize_kl,
    vae_loss,
)
from .modules import ELBOLoss, FusedLinearBernoulli, FusedLinearGaussian, Reparameterize, VAELoss
from .ops._native import empty_cache

__all__ = [
    "ELBOLoss",
    "FusedLinearBernoulli",
    "FusedLinearGaussian",
    "Reparameterize",
    "VAELoss",
    "__version__",
    "bernoulli_log_prob",
    "elbo_loss",
    "empty_cache",
    "gaussian_kl",
    "gaussian_log_prob",
    "linear_bernoulli_log_prob",
    "linear_gaussian_log_prob",
    "optim",
    "reparameterize",
    "reparameterize_kl",
    "vae_loss",
]
