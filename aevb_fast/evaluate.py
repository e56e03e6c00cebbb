"""Evaluating a trained VAE (PAPER.md): the lower bound per datapoint with estimator B or A, and an
importance-sampled estimate of the marginal log-likelihood,

    log p(x) ~= log (1/k) sum_k p(x, z_k) / q(z_k|x),   z_k ~ q(z|x),

the importance-weighted bound with k samples (Burda et al. 2015), which tends to log p(x) as k
grows. Rows are uint8 [N, D] as aevb_fast.data holds them; the work is done in batches of
`batch` datapoints x k samples, without gradients.
"""

import torch

from . import data as datasets
from .functional import ESTIMATORS, check_choice
from .models import VAE


def _mean_over_rows(model: VAE, rows: torch.Tensor, batch: int, device, **kwargs) -> float:
    total = 0.0
    with torch.no_grad():
        for start in range(0, rows.shape[0], batch):
            x = datasets.to_unit(rows[start:start + batch].to(device))
            total -= model(x, reduction="sum", **kwargs).item()
    return total / rows.shape[0]


def lower_bound(model: VAE, rows: torch.Tensor, *, estimator: str = "analytic", n_samples: int = 1,
                batch: int = 1000, device="cpu", backend: str | None = None) -> float:
    """The SGVB lower bound per datapoint: estimator B ("analytic", eq. 7) or A ("mc", eq. 6)."""
    check_choice("estimator", estimator, ESTIMATORS)
    return _mean_over_rows(model, rows, batch, device, n_samples=n_samples, estimator=estimator, backend=backend)


def marginal_log_likelihood(model: VAE, rows: torch.Tensor, *, k: int = 1000, batch: int | None = None,
                            device="cpu", backend: str | None = None) -> float:
    """log p(x) per datapoint, estimated with k importance samples from q(z|x) (see above)."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    batch = batch or max(1, 100_000 // k)  # datapoints per pass: about 1e5 decoded samples at a time
    return _mean_over_rows(model, rows, batch, device, n_samples=k, estimator="mc", iwae=True, backend=backend)
