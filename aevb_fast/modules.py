"""nn.Module wrappers of aevb_fast.functional; each checks its settings when it is built."""

from collections.abc import Callable

import torch
from torch import nn

from . import functional as F
from ._checks import (
    check_backend,
    check_beta,
    check_choice,
    check_chunk_rows,
    check_free_bits,
    check_gradient,
    check_iwae,
    check_n_samples,
)
from .likelihoods import MEAN_ACTIVATIONS
from .reference import REDUCTIONS


class Reparameterize(nn.Module):
    """z = mu + exp(logvar / 2) * eps: forward(mu, logvar) -> z [..., Z], or [L, ..., Z] with n_samples=L."""

    def __init__(self, n_samples: int | None = None, backend: str | None = None):
        super().__init__()
        check_n_samples(n_samples)
        check_backend(backend)
        self.n_samples, self.backend = n_samples, backend

    def forward(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        return F.reparameterize(mu, logvar, self.n_samples, backend=self.backend)

    def extra_repr(self) -> str:
        return f"n_samples={self.n_samples}, backend={self.backend}"


class VAELoss(nn.Module):
    """-(log p(x|z) - beta KL) for one sample: forward(recon, x, mu, logvar), see functional.vae_loss."""

    def __init__(
        self, reduction: str = "mean", beta: float = 1.0, likelihood: str = "bernoulli", backend: str | None = None
    ):
        super().__init__()
        check_choice("reduction", reduction, REDUCTIONS)
        check_beta(beta)
        check_choice("likelihood", likelihood, F.LIKELIHOODS)
        check_backend(backend)
        self.reduction, self.beta, self.likelihood, self.backend = reduction, beta, likelihood, backend

    def forward(self, recon, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        return F.vae_loss(
            recon, x, mu, logvar, self.reduction, beta=self.beta, likelihood=self.likelihood, backend=self.backend
        )

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}, beta={self.beta}, likelihood={self.likelihood!r}, backend={self.backend}"


class ELBOLoss(nn.Module):
    """The negative SGVB (or IWAE) bound with its decoder: forward(x, mu, logvar), see functional.elbo_loss."""

    def __init__(
        self,
        decoder: Callable,
        n_samples: int = 1,
        estimator: str = "analytic",
        iwae: bool = False,
        gradient: str = "standard",
        beta: float = 1.0,
        free_bits: float = 0.0,
        likelihood: str = "bernoulli",
        reduction: str = "mean",
        backend: str | None = None,
    ):
        super().__init__()
        if not callable(decoder):
            raise TypeError(f"decoder must be callable (an nn.Module or function), got {type(decoder).__name__}")
        check_n_samples(n_samples, allow_none=False)
        check_choice("estimator", estimator, F.ESTIMATORS)
        check_beta(beta)
        check_iwae(iwae, estimator, beta)
        check_gradient(gradient, estimator, iwae)
        check_free_bits(free_bits, estimator)
        check_choice("likelihood", likelihood, F.LIKELIHOODS)
        check_choice("reduction", reduction, REDUCTIONS)
        check_backend(backend)
        self.decoder = decoder
        self.n_samples, self.estimator, self.iwae, self.gradient = n_samples, estimator, iwae, gradient
        self.beta, self.free_bits = beta, free_bits
        self.likelihood, self.reduction, self.backend = likelihood, reduction, backend

    def forward(self, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        return F.elbo_loss(
            self.decoder,
            x,
            mu,
            logvar,
            n_samples=self.n_samples,
            estimator=self.estimator,
            iwae=self.iwae,
            gradient=self.gradient,
            beta=self.beta,
            free_bits=self.free_bits,
            likelihood=self.likelihood,
            reduction=self.reduction,
            backend=self.backend,
        )

    def extra_repr(self) -> str:
        return (
            f"n_samples={self.n_samples}, estimator={self.estimator!r}, iwae={self.iwae}, gradient={self.gradient!r}, "
            f"beta={self.beta}, free_bits={self.free_bits}, "
            f"likelihood={self.likelihood!r}, reduction={self.reduction!r}, backend={self.backend}"
        )


def _check_features(**sizes) -> None:
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")


class FusedLinearBernoulli(nn.Linear):
    """A Bernoulli decoder's output layer and its log-likelihood in one op, chunked over rows:
    forward(h [..., in_features], x [..., out_features]) -> log p(x|z) per datapoint [...] or reduced,
    see functional.linear_bernoulli_log_prob. It is an nn.Linear (same weight, bias, initialisation
    and state dict) whose forward takes the targets and returns the log-likelihood, not the logits."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        reduction: str = "none",
        *,
        chunk_rows: int | None = None,
        backend: str | None = None,
        device=None,
        dtype=None,
    ):
        _check_features(in_features=in_features, out_features=out_features)
        check_choice("reduction", reduction, REDUCTIONS)
        check_chunk_rows(chunk_rows)
        check_backend(backend)
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self.reduction, self.chunk_rows, self.backend = reduction, chunk_rows, backend

    def forward(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return F.linear_bernoulli_log_prob(
            h, self.weight, self.bias, x, self.reduction, chunk_rows=self.chunk_rows, backend=self.backend
        )

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, reduction={self.reduction!r}, chunk_rows={self.chunk_rows}, "
            f"backend={self.backend}"
        )


class FusedLinearGaussian(nn.Module):
    """A Gaussian decoder's two output layers (mean, logvar: nn.Linear each, as in the paper's
    decoder) and its log-likelihood in one op, chunked over rows: forward(h [..., in_features],
    x [..., out_features]) -> log p(x|z) per datapoint [...] or reduced, with mean =
    mean_activation(self.mean(h)) ("sigmoid" for the paper's Frey Face decoder) and logvar =
    self.logvar(h); see functional.linear_gaussian_log_prob."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        reduction: str = "none",
        *,
        mean_activation: str = "identity",
        chunk_rows: int | None = None,
        backend: str | None = None,
        device=None,
        dtype=None,
    ):
        _check_features(in_features=in_features, out_features=out_features)
        check_choice("reduction", reduction, REDUCTIONS)
        check_choice("mean_activation", mean_activation, MEAN_ACTIVATIONS)
        check_chunk_rows(chunk_rows)
        check_backend(backend)
        super().__init__()
        self.mean = nn.Linear(in_features, out_features, bias, device=device, dtype=dtype)
        self.logvar = nn.Linear(in_features, out_features, bias, device=device, dtype=dtype)
        self.reduction, self.mean_activation = reduction, mean_activation
        self.chunk_rows, self.backend = chunk_rows, backend

    def forward(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return F.linear_gaussian_log_prob(
            h,
            self.mean.weight,
            self.mean.bias,
            self.logvar.weight,
            self.logvar.bias,
            x,
            self.reduction,
            mean_activation=self.mean_activation,
            chunk_rows=self.chunk_rows,
            backend=self.backend,
        )

    def extra_repr(self) -> str:
        return (
            f"reduction={self.reduction!r}, mean_activation={self.mean_activation!r}, "
            f"chunk_rows={self.chunk_rows}, backend={self.backend}"
        )
