"""Evaluating a trained VAE (docs/paper.md): the lower bound per datapoint with estimator B or A, and an
importance-sampled estimate of the marginal log-likelihood,

    log p(x) ~= log (1/k) sum_k p(x, z_k) / q(z_k|x),   z_k ~ q(z|x),

the importance-weighted bound with k samples (Burda et al. 2015), which tends to log p(x) as k
grows. Rows are uint8 [N, D] as aevb_fast.training.data holds them. The work is done without gradients in
passes of at most PASS_SAMPLES decoded samples: datapoints in batches, and a datapoint's samples in
chunks, combined exactly (a mean of the chunks' bounds; for log p(x), a logsumexp of the chunks'
importance-weighted bounds, folded in as each chunk is made), so that memory does not grow with k or
L. Each result is an Estimate: the mean over datapoints, in nats and in bits per dimension, with its
standard error over the datapoints. seed= fixes the noise (as torch.manual_seed would) without
touching torch's generator.
"""

import math
from dataclasses import dataclass

import torch

from .. import ESTIMATORS, SEED_LIMIT
from . import data as datasets
from ._checks import check_choice, check_count
from .models import VAE

PASS_SAMPLES = 100_000  # decoded samples (datapoints x samples) per pass


@dataclass(frozen=True)
class Estimate:
    """A per-datapoint mean over `rows` datapoints of `dim` dimensions: nats (a log-likelihood or
    bound, higher is better) and the standard error of that mean over the datapoints (the spread of
    the data set's values, sample std / sqrt(rows); for log p(x) the importance sampling's own error
    comes on top, and falls as k grows)."""

    nats: float
    standard_error: float
    rows: int
    dim: int

    @classmethod
    def of(cls, values: torch.Tensor, dim: int) -> "Estimate":
        """The estimate of the datapoints' values [N] (standard error NaN for one datapoint)."""
        values = values.double()
        spread = values.std().item() if values.numel() > 1 else math.nan
        return cls(values.mean().item(), spread / math.sqrt(values.numel()), values.numel(), dim)

    @property
    def bits_per_dim(self) -> float:
        """-nats / (dim log 2): the negative log-likelihood in bits per dimension (of the density the
        likelihood defines; for 8-bit images under a density on [0, 1], add 8 for the bins)."""
        return -self.nats / (self.dim * math.log(2))

    @property
    def bits_per_dim_error(self) -> float:
        return self.standard_error / (self.dim * math.log(2))

    def __str__(self) -> str:
        return (
            f"{self.nats:10.3f} +- {self.standard_error:.3f} nats "
            f"({self.bits_per_dim:.4f} +- {self.bits_per_dim_error:.4f} bits/dim)"
        )


def _per_row(
    model: VAE, rows: torch.Tensor, n_samples: int, pass_samples: int, device, iwae: bool, seed, **kwargs
) -> Estimate:
    """Each datapoint's bound from n_samples samples (importance-weighted with iwae), in passes of
    at most pass_samples decoded samples, and their Estimate."""
    check_count("pass_samples", pass_samples)
    if seed is not None and not (isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed < SEED_LIMIT):
        raise ValueError(f"seed must be an int in [0, 2**63) or None, got {seed!r}")
    chunk = min(n_samples, pass_samples)
    batch = max(1, pass_samples // chunk)
    values = []
    with torch.no_grad(), torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)  # the kernels' noise keys come from the CPU generator
        for start in range(0, rows.shape[0], batch):
            x = datasets.to_unit(rows[start : start + batch].to(device))
            acc = None
            for first in range(0, n_samples, chunk):
                size = min(chunk, n_samples - first)
                bound = -model(x, n_samples=size, iwae=iwae, reduction="none", **kwargs).double()
                # a chunk's bound, weighted by its share of the samples, folded into the running total
                part = bound + math.log(size) if iwae else bound * size
                acc = part if acc is None else (torch.logaddexp(acc, part) if iwae else acc + part)
            values.append((acc - math.log(n_samples) if iwae else acc / n_samples).cpu())
    return Estimate.of(torch.cat(values), rows.shape[1])


def lower_bound(
    model: VAE,
    rows: torch.Tensor,
    *,
    estimator: str = "analytic",
    n_samples: int = 1,
    pass_samples: int = PASS_SAMPLES,
    device="cpu",
    backend: str | None = None,
    seed: int | None = None,
) -> Estimate:
    """The SGVB lower bound per datapoint: estimator B ("analytic", eq. 7) or A ("mc", eq. 6)."""
    check_choice("estimator", estimator, ESTIMATORS)
    check_count("n_samples", n_samples)
    return _per_row(model, rows, n_samples, pass_samples, device, False, seed, estimator=estimator, backend=backend)


def marginal_log_likelihood(
    model: VAE,
    rows: torch.Tensor,
    *,
    k: int = 1000,
    pass_samples: int = PASS_SAMPLES,
    device="cpu",
    backend: str | None = None,
    seed: int | None = None,
) -> Estimate:
    """log p(x) per datapoint, estimated with k importance samples from q(z|x) (see above), for the
    model's decoder, whichever likelihood of the registry it has."""
    check_count("k", k)
    return _per_row(model, rows, k, pass_samples, device, True, seed, estimator="mc", backend=backend)
