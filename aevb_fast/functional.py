"""The public functional API: the pieces of the VAE objective (Kingma & Welling 2013), each one
fused kernel call on tensors of any leading shape.

Conventions
- mu, logvar [..., Z]: one Gaussian q(z|x) per datapoint; the leading dims are the batch.
- Samples: n_samples=None draws one sample without a sample dimension (z [..., Z], a drop-in for
  the usual `mu + exp(logvar/2) * randn_like(mu)`); n_samples=L gives z [L, ..., Z].
- A log-likelihood sums over the last `event_dims` dimensions of its inputs; targets x broadcast
  against the values (x [B, D] serves logits [L, B, D] without a copy).
- reduction: "none" keeps one value per datapoint; "sum" and "mean" reduce over datapoints.
- dtypes: float32, float64, float16, bfloat16; math in float32 (float64 for float64); per-datapoint
  values in float32 (float64); z and gradients in the input dtype. x may be float, uint8 or bool.
- backend: "auto" (default, or AEVB_FAST_BACKEND), "cpu", "triton", "cuda" or "torch" (the plain
  PyTorch reference, aevb_fast.reference). auto uses the fused kernels where built and falls back
  to torch quietly; an explicit backend that cannot run raises RuntimeError.
- Noise: each call draws a fresh 63-bit seed from torch's default CPU generator, so
  torch.manual_seed makes runs reproducible; seed= pins it. The kernels regenerate eps in the
  backward pass instead of storing it. The torch backend draws the same noise (Philox4x32-10 in
  torch integer ops: its words bit-identical to the kernels', its normals within float32 ulps).
  batch_rows=(first, total) says the datapoints are rows first.. of a batch of `total` rows (one
  data-parallel rank's slice of the global batch, its rows flattened): with one seed, the ranks
  then draw together the noise one process would for the whole batch.
- Targets of the Bernoulli likelihood must lie in [0, 1]. The cpu kernels check this in the same
  pass and raise ValueError (for NaN too); the torch backend and GPU kernels do not check (it would
  cost a pass or a device sync).
- Extremes (tests/test_extremes.py): logits of any finite size (softplus in stable form); at
  +-inf the Bernoulli likelihood is the formula's limit (0 log 0 = 0): 0 where the logit makes the
  target certain (+inf with x = 1, -inf with x = 0), -inf where it makes it impossible. The
  Gaussian likelihood goes through the standardized residual (x - mean) exp(-logvar / 2), so
  x == mean stays finite for every finite logvar and a result is infinite only where its exact
  value lies beyond float32's range, as its signed infinity. reparameterize's sigma = exp(logvar / 2)
  overflows float32 past logvar = 177: z is then +-inf. A finite input never gives NaN within these
  limits; NaN and +-inf inputs propagate as in the reference.
- Bad input raises before any kernel runs: TypeError for a non-tensor or a wrong dtype (values
  other than float32, float64, float16 or bfloat16, such as integers or float8; targets other than
  those, uint8 or bool), ValueError for shapes that do not match or broadcast, tensors on different
  devices, n_samples < 1, unknown reduction / estimator / backend names, and the other rules each
  function states.
"""

import array
import math
from collections.abc import Callable

import torch

from . import likelihoods, reference
from ._checks import (
    GRADIENTS,
    check_backend,
    check_beta,
    check_choice,
    check_devices,
    check_free_bits,
    check_gradient,
    check_iwae,
    check_n_samples,
    check_values,
    flat,
    math_dtype,
)
from ._philox import philox_normal
from .likelihoods import *  # noqa: F403  the likelihoods' public functions, re-exported
from .likelihoods import LIKELIHOODS, _likelihood_inputs, _log_likelihood
from .ops import backends
from .ops.reparameterize import kl_only_seed
from .ops.reparameterize import reparameterize as _reparameterize_op
from .ops.vae_loss import vae_loss as _vae_loss_op

__all__ = [
    "ESTIMATORS",
    "GRADIENTS",
    "LIKELIHOODS",
    "SEED_LIMIT",
    "backend_for",
    "elbo_loss",
    "gaussian_kl",
    "iwae_bound",
    "reparameterize",
    "reparameterize_kl",
    "vae_loss",
    *likelihoods.__all__,
]

ESTIMATORS = ("analytic", "mc")
SEED_LIMIT = 2**63


def backend_for(device: torch.device | str, backend: str | None = None) -> str:
    """The backend that serves calls on tensors of `device` for the backend= argument `backend`
    (None: AEVB_FAST_BACKEND, else auto): "cpu", "cuda", "triton" or "torch". ValueError if the name
    is not a backend or cannot serve that device here, saying why."""
    check_backend(backend, torch.device(device))
    return backends.resolve(backend, torch.device(device))


def _gaussian_params(mu, logvar) -> tuple[torch.Tensor, torch.Tensor]:
    """mu and logvar checked and promoted to their common dtype."""
    check_values("mu", mu)
    check_values("logvar", logvar)
    check_devices(mu=mu, logvar=logvar)
    if mu.shape != logvar.shape:
        raise ValueError(
            f"mu and logvar must have the same shape, got mu {list(mu.shape)} and logvar {list(logvar.shape)}"
        )
    if mu.dim() == 0 or mu.shape[-1] == 0:
        raise ValueError(f"mu and logvar must have a latent dimension [..., Z] with Z >= 1, got {list(mu.shape)}")
    if mu.dtype == logvar.dtype:
        return mu, logvar
    dtype = torch.promote_types(mu.dtype, logvar.dtype)
    return mu.to(dtype), logvar.to(dtype)


def _check_seed(seed) -> None:
    if seed is None:
        return
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int or None, got {type(seed).__name__}")
    if not 0 <= seed < SEED_LIMIT:
        raise ValueError(f"seed must lie in [0, 2**63), got {seed}")


def _batch_rows(batch_rows, rows: int) -> tuple[int, int]:
    """(first, total) checked against the call's rows; (0, rows) for None."""
    if batch_rows is None:
        return 0, rows
    if (
        not isinstance(batch_rows, (tuple, list))
        or len(batch_rows) != 2
        or any(isinstance(v, bool) or not isinstance(v, int) for v in batch_rows)
    ):
        raise TypeError(f"batch_rows must be a pair of ints (first, total), got {batch_rows!r}")
    first, total = batch_rows
    if not (0 <= first and first + rows <= total):
        raise ValueError(
            f"batch_rows=({first}, {total}) cannot hold these {rows} rows: need 0 <= first and first + {rows} <= total"
        )
    return first, total


def _seed_tensor(seed: int | None, device: torch.device, first: int, total: int) -> torch.Tensor:
    """The kernel's (key, first, total) as an int64 tensor [3] on `device`: a tensor, not Python
    ints, so torch.compile neither recompiles per seed nor bakes one in. The key is drawn on the CPU
    generator: no sync."""
    if torch.compiler.is_compiling():
        key = torch.randint(SEED_LIMIT - 1, (1,), dtype=torch.int64) if seed is None else torch.tensor([seed])
        t = torch.cat([key, torch.tensor([first, total])])
    else:  # the same draw; the tensor made over a Python buffer, 2 us less than torch.tensor on every call
        key = int(torch.randint(SEED_LIMIT - 1, (1,), dtype=torch.int64)) if seed is None else seed
        t = torch.frombuffer(array.array("q", (key, first, total)), dtype=torch.int64)
    return t if device.type == "cpu" else t.to(device, non_blocking=True)


# Sampling and the KL term.


def reparameterize_kl(
    mu: torch.Tensor,
    logvar: torch.Tensor,
    n_samples: int | None = None,
    *,
    estimator: str = "analytic",
    gradient: str = "standard",
    seed: int | None = None,
    backend: str | None = None,
    batch_rows: tuple[int, int] | None = None,
):
    """z = mu + exp(logvar / 2) * eps, eps ~ N(0, I) (eq. 4), and the KL term of the bound, in one pass.

    Returns (z, kl). z is [..., Z] (n_samples=None) or [L, ..., Z]. With estimator="analytic"
    (estimator B, eq. 7) kl is KL(q(z|x) || N(0, I)) per datapoint [...]; with "mc" (estimator A,
    eq. 6) it is log q(z_l|x) - log p(z_l) per sample, [...] or [L, ...]. gradient="stl" (with
    "mc"): the same values, kl's gradient through z alone, log q taken at stopped mu and logvar
    (Roeder et al. 2017; the fused kernels' backward does it). batch_rows: see Noise in the module's
    docstring.
    """
    mu, logvar = _gaussian_params(mu, logvar)
    check_n_samples(n_samples)
    check_choice("estimator", estimator, ESTIMATORS)
    if gradient != "standard":  # its checks off the common path: every call pays for them
        check_choice("gradient", gradient, GRADIENTS[:2])
        check_gradient(gradient, estimator, iwae=False)
    _check_seed(seed)
    mc, stl = estimator == "mc", gradient == "stl"
    batch, Z = mu.shape[:-1], mu.shape[-1]
    first, total = _batch_rows(batch_rows, math.prod(batch))
    name = backends.resolve(backend, mu.device)
    if name != "torch":
        # The op takes mu [..., Z] and n_samples=None as they are: z comes in the caller's shape.
        return _reparameterize_op.prechecked(
            mu, logvar, _seed_tensor(seed, mu.device, first, total), n_samples, mc, stl, name
        )
    n = 1 if n_samples is None else n_samples
    z, kl = _reparameterize_torch(flat(mu, (-1, Z)), flat(logvar, (-1, Z)), n, mc, stl, seed, first, total)
    # Without a sample dimension, views rather than z[0]: the backward of indexing would build a
    # zero-filled [1, ..., Z] gradient and copy into it.
    samples = () if n_samples is None else (n,)
    return flat(z, (*samples, *batch, Z)), flat(kl, (*samples, *batch) if mc else batch)


def _reparameterize_torch(mu, logvar, n, mc, stl, seed, first, total):
    """The reference on rows [B, Z] with the kernels' noise: the key drawn as theirs (one draw of
    torch's CPU generator where seed is None), eps[l, b, j] = randn(key, (l*total + first + b)*Z + j)."""
    m, v = mu.to(math_dtype(mu.dtype)), logvar.to(math_dtype(mu.dtype))
    if torch.compiler.is_compiling():  # a tensor key: no graph break, no seed baked in
        key = torch.randint(SEED_LIMIT - 1, (1,), dtype=torch.int64) if seed is None else torch.tensor([seed])
        key = key.to(mu.device)
    else:  # the same draw as a Python int, whose bit operations with the words are cheaper
        key = int(torch.randint(SEED_LIMIT - 1, (1,), dtype=torch.int64)) if seed is None else seed
    (B, Z), device = mu.shape, mu.device
    rows = torch.arange(n, device=device)[:, None] * total + (first + torch.arange(B, device=device))
    offsets = rows[:, :, None] * Z + torch.arange(Z, device=device)
    eps = philox_normal(key, offsets).to(m.dtype)
    z = reference.reparameterize(m, v, eps)
    if stl:
        # log q at stopped mu and logvar, of z's standardized value: the gradient through z alone.
        # z goes out as a view of its own, so that a hook on it (iwae_bound's) sees the caller's uses.
        kl = reference.log_ratio(z, (z - m.detach()) * torch.exp(-0.5 * v.detach()), v.detach())
        return z.view_as(z).to(mu.dtype), kl
    kl = reference.log_ratio(z, eps, v) if mc else reference.gaussian_kl(m, v)
    return z.to(mu.dtype), kl


def reparameterize(
    mu: torch.Tensor,
    logvar: torch.Tensor,
    n_samples: int | None = None,
    *,
    seed: int | None = None,
    backend: str | None = None,
    batch_rows: tuple[int, int] | None = None,
) -> torch.Tensor:
    """z = mu + exp(logvar / 2) * eps (eq. 4): [..., Z], or [L, ..., Z] with n_samples=L.

    Drop-in for the PyTorch VAE example's `reparameterize(mu, logvar)`."""
    return reparameterize_kl(mu, logvar, n_samples, seed=seed, backend=backend, batch_rows=batch_rows)[0]


def gaussian_kl(
    mu: torch.Tensor, logvar: torch.Tensor, reduction: str = "none", *, backend: str | None = None
) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) = -1/2 sum_j (1 + logvar - mu^2 - exp(logvar)) (Appendix B),
    per datapoint [...] or reduced."""
    mu, logvar = _gaussian_params(mu, logvar)
    check_choice("reduction", reduction, reference.REDUCTIONS)
    name = backends.resolve(backend, mu.device)
    if name == "torch":
        kl = reference.gaussian_kl(mu.to(math_dtype(mu.dtype)), logvar.to(math_dtype(mu.dtype)))
    else:
        kl = _analytic_kl(mu, logvar, name)
    return reference.reduce(kl, reduction)


def _analytic_kl(mu, logvar, backend: str) -> torch.Tensor:
    """KL per datapoint [...] from the reparameterize op with zero samples, which computes the
    analytic KL alone (its seed unused)."""
    return _reparameterize_op.prechecked(mu, logvar, kl_only_seed(mu, logvar), 0, False, False, backend)[1]


# The whole objective.


def vae_loss(
    recon,
    x: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    reduction: str = "mean",
    *,
    beta: float = 1.0,
    likelihood: str = "bernoulli",
    backend: str | None = None,
) -> torch.Tensor:
    """The negative bound of estimator B for one sample, -(log p(x|z) - beta KL(q(z|x) || p(z))), per
    datapoint [...] or reduced: the loss of the PyTorch VAE example (BCE + KLD with reduction="sum"),
    fused and in stable form.

    recon: the decoder output for z = reparameterize(mu, logvar): logits [..., D] (Bernoulli; no
    sigmoid), or a (mean, logvar) pair (Gaussian). x: the data, [..., D] or any per-datapoint shape
    of D elements (e.g. images [B, 1, 28, 28])."""
    mu, logvar = _gaussian_params(mu, logvar)
    check_choice("reduction", reduction, reference.REDUCTIONS)
    check_beta(beta)
    batch = mu.shape[:-1]
    entry, values, x, _ = _likelihood_inputs(likelihood, recon, x, batch, 0)
    check_devices(decoder_output=values[0], mu=mu)
    name = backends.resolve(backend, mu.device)
    Z = mu.shape[-1]
    m, v = flat(mu, (-1, Z)), flat(logvar, (-1, Z))
    if name != "torch" and not x.requires_grad:
        loss = _vae_loss_op(entry, values, x, m, v, beta, reduction, name)
        return flat(loss, batch) if reduction == "none" else loss
    log_px = entry.rows(values, x, name)
    kl = (
        reference.gaussian_kl(m.to(math_dtype(m.dtype)), v.to(math_dtype(m.dtype)))
        if name == "torch"
        else (_analytic_kl(m, v, name))
    )
    return reference.reduce(flat(-(log_px - beta * kl), batch), reduction)


def elbo_loss(
    decode: Callable,
    x: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    *,
    n_samples: int = 1,
    estimator: str = "analytic",
    iwae: bool = False,
    gradient: str = "standard",
    beta: float = 1.0,
    free_bits: float = 0.0,
    likelihood: str = "bernoulli",
    reduction: str = "mean",
    seed: int | None = None,
    backend: str | None = None,
    batch_rows: tuple[int, int] | None = None,
) -> torch.Tensor:
    """The negative SGVB bound with L = n_samples samples per datapoint, per datapoint [...] or reduced.

    estimator="analytic": estimator B (eq. 7), (1/L) sum_l log p(x|z_l) - beta KL.
    estimator="mc":       estimator A (eq. 6), (1/L) sum_l [log p(x|z_l) - beta (log q(z_l|x) - log p(z_l))].
    iwae=True (with "mc", beta=1): the importance-weighted bound with k = L,
                          logsumexp_l [log p(x|z_l) - log q(z_l|x) + log p(z_l)] - log L.
    gradient (with "mc"): "standard"; "stl", log q(z|x) at stopped encoder outputs (Roeder et al.
                          2017: unbiased for the bound, biased for iwae with L > 1); "dreg" (iwae),
                          doubly reparameterized (Tucker et al. 2018, see iwae_bound). The values are
                          the same; only the encoder's gradient changes.
    free_bits > 0 (with "analytic"): the KL term with free bits per latent unit (Kingma et al. 2016,
                          reference.free_bits_kl), the minibatch's, shared by its datapoints: an
                          objective for training, not a bound.

    decode maps z [L, ..., Z] to the decoder output for every sample: logits [L, ..., D] or a
    (mean, logvar) pair; x [..., D] (or any per-datapoint shape of D elements) is shared by the samples.
    batch_rows: see Noise in the module's docstring.
    """
    check_n_samples(n_samples, allow_none=False)
    check_choice("estimator", estimator, ESTIMATORS)
    check_beta(beta)
    check_iwae(iwae, estimator, beta)
    check_gradient(gradient, estimator, iwae)
    check_free_bits(free_bits, estimator)
    check_choice("reduction", reduction, reference.REDUCTIONS)
    z, kl = reparameterize_kl(
        mu,
        logvar,
        n_samples,
        estimator=estimator,
        gradient="standard" if gradient == "standard" else "stl",
        seed=seed,
        backend=backend,
        batch_rows=batch_rows,
    )
    log_px = _log_likelihood(likelihood, decode(z), x, mu.shape[:-1], 1, backend)
    if free_bits:
        kl = reference.free_bits_kl(mu, logvar, free_bits).to(kl.dtype).expand(kl.shape)
    bound = iwae_bound(log_px, kl, z, gradient=gradient) if iwae else reference.elbo(log_px, kl, beta)
    return reference.reduce(-bound, reduction)


def iwae_bound(
    log_px: torch.Tensor, log_ratio: torch.Tensor, z: torch.Tensor | None = None, *, gradient: str = "standard"
) -> torch.Tensor:
    """The importance-weighted bound per datapoint [...] from k = L samples (Burda et al. 2015),
    logsumexp_l (log p(x|z_l) - log_ratio_l) - log k, for log_px and log_ratio [L, ...].

    gradient="dreg" (Tucker et al. 2018) gives the encoder the doubly reparameterized gradient,
    sum_l w_l^2 d/dz_l (log p(x, z_l) - log q(z_l|x)) dz_l/dphi with w the normalized importance
    weights, whose signal-to-noise ratio does not fall with k as the standard one's does; the
    decoder's gradient stays the standard one. It needs z [L, ..., Z] and log_ratio from
    reparameterize_kl(..., estimator="mc", gradient="stl"), and scales (by hooks) the gradients
    that reach them through this bound: z must reach the decoder only."""
    check_choice("gradient", gradient, GRADIENTS)
    bound = reference.iwae_bound(log_px, log_ratio)
    if gradient == "dreg":
        if z is None or z.shape[:-1] != log_ratio.shape:
            raise ValueError(
                "gradient='dreg' needs z [L, ..., Z] beside log_ratio [L, ...], got "
                + ("none" if z is None else f"z {list(z.shape)} and log_ratio {list(log_ratio.shape)}")
            )
        weights = torch.softmax((log_px - log_ratio).detach(), dim=0)
        if z.requires_grad:
            z.register_hook(lambda g: g * weights[..., None].to(g.dtype))
        if log_ratio.requires_grad:
            log_ratio.register_hook(lambda g: g * weights.to(g.dtype))
    return bound
