"""aevb_fast: fused kernels for the objective of Auto-Encoding Variational Bayes (the VAE's ELBO).

import aevb_fast
z = aevb_fast.reparameterize(mu, logvar)
loss = aevb_fast.vae_loss(logits, x, mu, logvar, reduction="sum")
optimizer = aevb_fast.optim.Adagrad(model.parameters(), lr=0.02, weight_decay=1 / N)
"""

from . import likelihoods, optim, reference
from ._info import info
from ._version import __version__
from .functional import (
    ESTIMATORS,
    GRADIENTS,
    LIKELIHOODS,
    SEED_LIMIT,
    backend_for,
    elbo_loss,
    gaussian_kl,
    iwae_bound,
    reparameterize,
    reparameterize_kl,
    vae_loss,
)
from .likelihoods import *  # noqa: F403  each likelihood's log-likelihood and fused head
from .modules import ELBOLoss, FusedLinearBernoulli, FusedLinearGaussian, Reparameterize, VAELoss
from .ops._native import empty_cache
from .ops.backends import BACKENDS
from .ops.linear_likelihood import chunk_rows_for
from .reference import REDUCTIONS

__all__ = [
    "BACKENDS",
    "ESTIMATORS",
    "GRADIENTS",
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
    "chunk_rows_for",
    "elbo_loss",
    "empty_cache",
    "gaussian_kl",
    "iwae_bound",
    "info",
    "optim",
    "reference",
    "reparameterize",
    "reparameterize_kl",
    "vae_loss",
    *likelihoods.__all__,
]
