"""Evaluating a trained VAE (docs/paper.md): the lower bound per datapoint with estimator B or A, and an
importance-sampled estimate of the marginal log-likelihood,

    log p(x) ~= log (1/k) sum_k p(x, z_k) / q(z_k|x),   z_k ~ q(z|x),

the importance-weighted bound with k samples (Burda et al. 2015), which tends to log p(x) as k
grows. Rows are uint8 [N, D] as aevb_fast.training.data holds them. The work is done without gradients in
passes of at most PASS_SAMPLES decoded samples: datapoints in batches, and a datapoint's samples in
chunks, combined exactly (a mean of the chunks' bounds; for log p(x), a logsumexp of the chunks'
importance-weighted bounds), so that memory stays bounded for any k or L.
"""

import math

import torch

from .. import ESTIMATORS
from . import data as datasets
from ._checks import check_choice, check_count
from .models import VAE

PASS_SAMPLES = 100_000  # decoded samples (datapoints x samples) per pass


def _mean_over_rows(
    model: VAE, rows: torch.Tensor, n_samples: int, pass_samples: int, device, iwae: bool, **kwargs
) -> float:
    """The mean over rows of each datapoint's bound from n_samples samples (importance-weighted
    with iwae), in passes of at most pass_samples decoded samples."""
    check_count("pass_samples", pass_samples)
    chunk = min(n_samples, pass_samples)
    batch = max(1, pass_samples // chunk)
    total = 0.0
    with torch.no_grad():
        for start in range(0, rows.shape[0], batch):
            x = datasets.to_unit(rows[start : start + batch].to(device))
            parts = []
            for first in range(0, n_samples, chunk):
                size = min(chunk, n_samples - first)
                bound = -model(x, n_samples=size, iwae=iwae, reduction="none", **kwargs).double()
                # a chunk's bound, weighted by its share of the samples
                parts.append(bound + math.log(size) if iwae else bound * size)
            stacked = torch.stack(parts)
            per_row = torch.logsumexp(stacked, 0) - math.log(n_samples) if iwae else stacked.sum(0) / n_samples
            total += per_row.sum().item()
    return total / rows.shape[0]


def lower_bound(
    model: VAE,
    rows: torch.Tensor,
    *,
    estimator: str = "analytic",
    n_samples: int = 1,
    pass_samples: int = PASS_SAMPLES,
    device="cpu",
    backend: str | None = None,
) -> float:
    """The SGVB lower bound per datapoint: estimator B ("analytic", eq. 7) or A ("mc", eq. 6)."""
    check_choice("estimator", estimator, ESTIMATORS)
    check_count("n_samples", n_samples)
    return _mean_over_rows(model, rows, n_samples, pass_samples, device, False, estimator=estimator, backend=backend)


def marginal_log_likelihood(
    model: VAE,
    rows: torch.Tensor,
    *,
    k: int = 1000,
    pass_samples: int = PASS_SAMPLES,
    device="cpu",
    backend: str | None = None,
) -> float:
    """log p(x) per datapoint, estimated with k importance samples from q(z|x) (see above)."""
    check_count("k", k)
    return _mean_over_rows(model, rows, k, pass_samples, device, True, estimator="mc", backend=backend)
