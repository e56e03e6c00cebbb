"""aevb_fast::reparameterize: z = mu + exp(logvar / 2) * eps with eps drawn in the kernel, and the
KL term of the bound in the same pass (docs/paper.md, eqs. 6-7, Appendix B).

Shapes: mu, logvar [*batch, Z], read as B = prod(batch) rows; seed [3] int64 (key, first, rows) on
their device; z [L, *batch, Z], or [*batch, Z] for n_samples=None (one sample, no sample dimension:
the caller's shape without a view, which would be one more autograd node); kl [*batch] for the
analytic KL (estimator B, mc=False) or [L, *batch] of log q(z_l|x) - log p(z_l) (estimator A,
mc=True; [*batch] for n_samples=None). The B rows are rows first.. of a batch of `rows` rows
(first = 0, rows = B for a whole batch), and eps[l, b, j] = randn(key, (l*rows + first + b)*Z + j)
(docs/design.md, Randomness): data-parallel ranks holding slices of one batch draw together the noise one
process would. eps is never stored: the backward op regenerates it. L = 0 gives the analytic KL alone.
stl (with mc) changes the backward only: the kl term's gradient goes through z alone, log q(z|x) taken
at stopped mu and logvar (Roeder et al. 2017): d kl / d z = z - eps / sigma, no direct d/dlogvar.
"""

import math

import torch

from ._library import define, require, require_one_device, row_dtype, traced, triton_kernels
from ._native import dtype_code, empty, launch

_KL_ONLY_SEEDS = {}


def kl_only_seed(*inputs: torch.Tensor) -> torch.Tensor:
    """The seed argument of a call with zero samples (the analytic KL alone), which draws no noise
    and never reads it: made once per device, except where the call is traced (the graph makes its
    own)."""
    device = inputs[0].device
    if traced(inputs):
        return torch.zeros(3, dtype=torch.int64, device=device)
    seed = _KL_ONLY_SEEDS.get(device)
    if seed is None:
        seed = _KL_ONLY_SEEDS[device] = torch.zeros(3, dtype=torch.int64, device=device)
    return seed


def _check(mu, logvar, seed, n_samples):
    require(
        mu.dim() >= 1 and mu.shape == logvar.shape and mu.dtype == logvar.dtype,
        lambda: (
            f"aevb_fast::reparameterize: mu and logvar must be [..., Z] of one shape and dtype, got "
            f"{tuple(mu.shape)} {mu.dtype} and {tuple(logvar.shape)} {logvar.dtype}"
        ),
    )
    require(
        seed.shape == (3,) and seed.dtype == torch.int64 and seed.device == mu.device,
        lambda: (
            f"aevb_fast::reparameterize: seed must be int64 [3] (key, first row, rows) on {mu.device}, got "
            f"{tuple(seed.shape)} {seed.dtype} on {seed.device}"
        ),
    )
    require(
        n_samples is None or n_samples >= 0,
        lambda: f"aevb_fast::reparameterize: n_samples must be >= 0 or None, got {n_samples}",
    )
    require_one_device("reparameterize", mu=mu, logvar=logvar)


def _shapes(mu, n_samples, mc):
    """(z's shape, kl's shape) for mu [*batch, Z]."""
    samples = () if n_samples is None else (n_samples,)
    return (*samples, *mu.shape), (*samples, *mu.shape[:-1]) if mc else mu.shape[:-1]


def _rows(mu):
    """(B, Z): the rows and latent units of mu [*batch, Z]."""
    Z = mu.shape[-1]
    return (mu.numel() // Z if Z else math.prod(mu.shape[:-1])), Z


def _forward_native(mu, logvar, seed, n_samples, mc, stl):
    mu, logvar = mu.contiguous(), logvar.contiguous()
    (B, Z), (z_shape, kl_shape) = _rows(mu), _shapes(mu, n_samples, mc)
    z = empty(z_shape, mu.dtype, mu)
    kl = mu.new_empty(kl_shape, dtype=row_dtype(mu.dtype))
    launch(
        "reparameterize_forward",
        mu,
        dtype_code(mu.dtype),
        mu.data_ptr(),
        logvar.data_ptr(),
        seed.data_ptr(),
        z.data_ptr(),
        kl.data_ptr(),
        B,
        Z,
        1 if n_samples is None else n_samples,
        mc,
    )
    return z, kl


def _forward_triton(mu, logvar, seed, n_samples, mc, stl):
    (B, Z), (z_shape, kl_shape) = _rows(mu), _shapes(mu, n_samples, mc)
    z, kl = triton_kernels().reparameterize.forward(
        mu.contiguous().view(B, Z),
        logvar.contiguous().view(B, Z),
        seed,
        1 if n_samples is None else n_samples,
        mc,
        row_dtype(mu.dtype),
    )
    return z.view(z_shape), kl.view(kl_shape)


def _check_backward(grad_z, grad_kl, mu, logvar, seed, n_samples, mc, stl):
    _check(mu, logvar, seed, n_samples)
    z_shape, kl_shape = _shapes(mu, n_samples, mc)
    require(
        grad_z is None or (grad_z.shape == z_shape and grad_z.dtype == mu.dtype),
        lambda: f"aevb_fast::reparameterize_backward: grad_z must be {z_shape} {mu.dtype}",
    )
    require(
        grad_kl is None or (grad_kl.shape == kl_shape and grad_kl.dtype == row_dtype(mu.dtype)),
        lambda: "aevb_fast::reparameterize_backward: grad_kl must match the kl output",
    )
    require_one_device("reparameterize_backward", grad_z=grad_z, grad_kl=grad_kl, mu=mu)


def _backward_native(grad_z, grad_kl, mu, logvar, seed, n_samples, mc, stl):
    mu, logvar = mu.contiguous(), logvar.contiguous()
    B, Z = _rows(mu)
    # A missing gradient (None: nothing used that output) is a null pointer, which the kernels read as zeros.
    grad_z = grad_z.contiguous() if grad_z is not None else None
    grad_kl = grad_kl.contiguous() if grad_kl is not None else None
    grad_mu, grad_logvar = empty(mu.shape, mu.dtype, mu), empty(mu.shape, mu.dtype, mu)
    launch(
        "reparameterize_backward",
        mu,
        dtype_code(mu.dtype),
        grad_z.data_ptr() if grad_z is not None else 0,
        grad_kl.data_ptr() if grad_kl is not None else 0,
        mu.data_ptr(),
        logvar.data_ptr(),
        seed.data_ptr(),
        grad_mu.data_ptr(),
        grad_logvar.data_ptr(),
        B,
        Z,
        1 if n_samples is None else n_samples,
        mc,
        stl,
    )
    return grad_mu, grad_logvar


def _backward_triton(grad_z, grad_kl, mu, logvar, seed, n_samples, mc, stl):
    B, Z = _rows(mu)
    L = 1 if n_samples is None else n_samples
    grad_mu, grad_logvar = triton_kernels().reparameterize.backward(
        grad_z.contiguous().view(L, B, Z) if grad_z is not None else None,
        grad_kl.contiguous().view((L, B) if mc else (B,)) if grad_kl is not None else None,
        mu.contiguous().view(B, Z),
        logvar.contiguous().view(B, Z),
        seed,
        L,
        mc,
        stl,
        row_dtype(mu.dtype),
    )
    return grad_mu.view(mu.shape), grad_logvar.view(mu.shape)


def _fake(mu, logvar, seed, n_samples, mc, stl, backend):
    z_shape, kl_shape = _shapes(mu, n_samples, mc)
    return mu.new_empty(z_shape), mu.new_empty(kl_shape, dtype=row_dtype(mu.dtype))


def _fake_backward(grad_z, grad_kl, mu, logvar, seed, n_samples, mc, stl, backend):
    return mu.new_empty(mu.shape), logvar.new_empty(logvar.shape)


reparameterize_backward = define(
    "reparameterize_backward",
    "(Tensor? grad_z, Tensor? grad_kl, Tensor mu, Tensor logvar, Tensor seed, int? n_samples, bool mc, bool stl, "
    "str backend)"
    " -> (Tensor, Tensor)",
    {"cpu": _backward_native, "cuda": _backward_native, "triton": _backward_triton},
    _fake_backward,
    check=_check_backward,
)


def _setup_context(ctx, inputs, output):
    mu, logvar, seed, n_samples, mc, stl, backend = inputs
    ctx.save_for_backward(mu, logvar, seed)
    ctx.n_samples, ctx.mc, ctx.stl, ctx.backend = n_samples, mc, stl, backend
    # An output nobody used arrives as None rather than as a buffer of zeros to read.
    ctx.set_materialize_grads(False)


def _backward(ctx, grad_z, grad_kl):
    mu, logvar, seed = ctx.saved_tensors
    grad_mu, grad_logvar = reparameterize_backward.prechecked(
        grad_z, grad_kl, mu, logvar, seed, ctx.n_samples, ctx.mc, ctx.stl, ctx.backend
    )
    return grad_mu, grad_logvar, None, None, None, None, None


reparameterize = define(
    "reparameterize",
    "(Tensor mu, Tensor logvar, Tensor seed, int? n_samples, bool mc, bool stl, str backend) -> (Tensor, Tensor)",
    {"cpu": _forward_native, "cuda": _forward_native, "triton": _forward_triton},
    _fake,
    _setup_context,
    _backward,
    check=lambda mu, logvar, seed, n_samples, mc, stl: _check(mu, logvar, seed, n_samples),
)
