"""aevb_fast: fused kernels for the objective of Auto-Encoding Variational Bayes (the VAE's ELBO).

import aevb_fast
z = aevb_fast.reparameterize(mu, logvar)
loss = aevb_fast.vae_loss(logits, x, mu, logvar, reduction="sum")
optimizer = aevb_fast.optim.Adagrad(model.parameters(), lr=0.02, weight_decay=1 / N)
"""

from . import optim, reference
from ._info import info
from ._version import __version__
from .functional import (
    ESTIMATORS,
    LIKELIHOODS,
    SEED_LIMIT,
    backend_for,
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
from .ops.backends import BACKENDS
from .ops.linear_likelihood import chunk_rows_for
from .reference import REDUCTIONS

__all__ = [
    "BACKENDS",
    "ESTIMATORS",
    "LIKELIHOODS",
    "REDUCTIONS",
    "SEED_LIMIT",
    "ELBOLoss",
    "FusedLinearBernoulli",
    "FusedLinearGaussian",
    "Reparameterize",
    "VAELoss",
    "__version__",
    "backend_for",
    "bernoulli_log_prob",
    "chunk_rows_for",
    "elbo_loss",
    "empty_cache",
    "gaussian_kl",
    "gaussian_log_prob",
    "info",
    "linear_bernoulli_log_prob",
    "linear_gaussian_log_prob",
    "optim",
    "reference",
    "reparameterize",
    "reparameterize_kl",
    "vae_loss",
]
