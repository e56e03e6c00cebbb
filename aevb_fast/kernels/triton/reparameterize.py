"""Triton kernels of reparameterized sampling with the Gaussian KL term (docs/paper.md, eqs. 6-7 and
Appendix B), forward and backward:

    z_l = mu + sigma * eps_l,  sigma = exp(logvar / 2),  eps_l = tl.randn(key, (l*rows + first + b)*Z + j)
    analytic (estimator B):  KL = 1/2 sum_j (mu^2 + sigma^2 - 1 - logvar)              [B]
    mc (estimator A):        log q(z_l|x) - log p(z_l) = 1/2 sum_j (z_l^2 - eps_l^2 - logvar)  [L, B]

Shapes: mu, logvar [B, Z] contiguous, of one dtype; seed [3] int64 (key, first, rows) on their
device: these B rows are rows first.. of a batch of `rows` rows, and draw the noise one call on the
whole batch would; z [L, B, Z] in their dtype. Math and sums in the KL's dtype (float32; float64 for
float64 inputs). eps is never stored: the backward draws it again from the same (seed, offset).
With STL the backward gives the mc term's gradient through z alone (log q at stopped mu and logvar).
"""

import torch
import triton
import triton.language as tl

from ._launch import launch_rows, on_device, row_blocks
from ._tiles import row_block, tile


@triton.jit
def reparameterize_forward_kernel(
    mu_ptr,
    logvar_ptr,
    seed_ptr,
    z_ptr,
    kl_ptr,
    B,
    Z,
    row_programs,
    MC: tl.constexpr,
    SAMPLE: tl.constexpr,
    BLOCK_ROWS: tl.constexpr,
    BLOCK_COLS: tl.constexpr,
):
    # Program p draws sample p // row_programs for one block of rows; without samples (L = 0)
    # there is one program per block and only the analytic KL.
    pid = tl.program_id(0).to(tl.int64)
    sample = pid // row_programs
    rows, row_ok = row_block(pid % row_programs, B, BLOCK_ROWS)
    seed = tl.load(seed_ptr)
    noise_row = sample * tl.load(seed_ptr + 2) + tl.load(seed_ptr + 1)
    math_t = kl_ptr.dtype.element_ty
    acc = tl.zeros([BLOCK_ROWS, BLOCK_COLS], dtype=math_t)
    for start in range(0, Z, BLOCK_COLS):
        _, mask, at = tile(rows, row_ok, start, Z, BLOCK_COLS)
        m = tl.load(mu_ptr + at, mask=mask, other=0).to(math_t)
        v = tl.load(logvar_ptr + at, mask=mask, other=0).to(math_t)
        s = tl.exp(0.5 * v)
        if SAMPLE:
            eps = tl.randn(seed, noise_row * Z + at).to(math_t)
            z = m + s * eps
            tl.store(z_ptr + sample * B * Z + at, z.to(z_ptr.dtype.element_ty), mask=mask)
            if MC:
                acc += tl.where(mask, z * z - eps * eps - v, 0.0)
        if not MC:
            acc += tl.where(mask, m * m + s * s - 1.0 - v, 0.0)
    kl = 0.5 * tl.sum(acc, axis=1)
    if MC:
        tl.store(kl_ptr + sample * B + rows, kl, mask=row_ok)
    elif sample == 0:
        tl.store(kl_ptr + rows, kl, mask=row_ok)


@triton.jit
def reparameterize_backward_kernel(
    grad_z_ptr,
    grad_kl_ptr,
    mu_ptr,
    logvar_ptr,
    seed_ptr,
    grad_mu_ptr,
    grad_logvar_ptr,
    B,
    Z,
    L,
    plane,
    MC: tl.constexpr,
    STL: tl.constexpr,
    HAS_GRAD_Z: tl.constexpr,
    HAS_GRAD_KL: tl.constexpr,
    BLOCK_ROWS: tl.constexpr,
    BLOCK_COLS: tl.constexpr,
):
    rows, row_ok = row_block(tl.program_id(0), B, BLOCK_ROWS)
    seed = tl.load(seed_ptr)
    first, noise_plane = tl.load(seed_ptr + 1) * Z, tl.load(seed_ptr + 2) * Z
    math_t = grad_kl_ptr.dtype.element_ty
    for start in range(0, Z, BLOCK_COLS):
        _, mask, at = tile(rows, row_ok, start, Z, BLOCK_COLS)
        m = tl.load(mu_ptr + at, mask=mask, other=0).to(math_t)
        s = tl.exp(0.5 * tl.load(logvar_ptr + at, mask=mask, other=0).to(math_t))
        # the factor of eps in d kl / d z = m + sc eps: sigma, less 1 / sigma with STL
        sc = s
        if STL:
            sc = s - 1.0 / s
        g_analytic = tl.zeros([BLOCK_ROWS, 1], dtype=math_t)
        if HAS_GRAD_KL and not MC:
            g_analytic = tl.load(grad_kl_ptr + rows, mask=row_ok, other=0).to(math_t)[:, None]
        grad_mu = g_analytic * m  # d KL / d mu = mu
        grad_eps = tl.zeros([BLOCK_ROWS, BLOCK_COLS], dtype=math_t)  # sum over samples of g * eps
        g_mc_sum = tl.zeros([BLOCK_ROWS, 1], dtype=math_t)
        offset = at
        noise = first + at
        kl_at = rows
        for _ in range(0, L):
            eps = tl.randn(seed, noise).to(math_t)
            g = tl.zeros([BLOCK_ROWS, BLOCK_COLS], dtype=math_t)
            if HAS_GRAD_Z:
                g = tl.load(grad_z_ptr + offset, mask=mask, other=0).to(math_t)
            if MC and HAS_GRAD_KL:
                # d/dz of the mc term is z (z - eps / sigma with STL); its direct d/dlogvar is -1/2
                # (none with STL).
                g_mc = tl.load(grad_kl_ptr + kl_at, mask=row_ok, other=0).to(math_t)[:, None]
                g += g_mc * (m + sc * eps)
                if not STL:
                    g_mc_sum += g_mc
            # dz/dmu = 1,  dz/dlogvar = sigma * eps / 2
            grad_mu += g
            grad_eps += g * eps
            offset += plane
            noise += noise_plane
            kl_at += B
        # d KL / d logvar = (sigma^2 - 1) / 2, with sigma factored out as in the C++ kernels: no
        # inf - inf once sigma^2 overflows.
        grad_logvar = 0.5 * s * (g_analytic * s + grad_eps) - 0.5 * (g_analytic + g_mc_sum)
        tl.store(grad_mu_ptr + at, grad_mu.to(grad_mu_ptr.dtype.element_ty), mask=mask)
        tl.store(grad_logvar_ptr + at, grad_logvar.to(grad_logvar_ptr.dtype.element_ty), mask=mask)


def forward(
    mu: torch.Tensor, logvar: torch.Tensor, seed: torch.Tensor, n_samples: int, mc: bool, kl_dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """(z [L, B, Z], kl [B] or [L, B] when mc) for contiguous mu, logvar [B, Z]."""
    B, Z = mu.shape
    z = mu.new_empty((n_samples, B, Z))
    kl = mu.new_empty((n_samples, B) if mc else (B,), dtype=kl_dtype)
    if kl.numel() == 0:
        return z, kl
    kernel = reparameterize_forward_kernel
    blocks = row_blocks(kernel, B, Z)
    row_programs = triton.cdiv(B, blocks["BLOCK_ROWS"])
    with on_device(mu):
        kernel[(row_programs * max(n_samples, 1),)](
            mu, logvar, seed, z, kl, B, Z, row_programs, MC=mc, SAMPLE=n_samples > 0, **blocks
        )
    return z, kl


def backward(
    grad_z: torch.Tensor | None,
    grad_kl: torch.Tensor | None,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    seed: torch.Tensor,
    n_samples: int,
    mc: bool,
    stl: bool,
    kl_dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(grad_mu, grad_logvar) [B, Z] from contiguous upstream gradients of z and kl (either None);
    stl: the mc kl term's gradient through z alone."""
    B, Z = mu.shape
    grad_mu, grad_logvar = torch.empty_like(mu), torch.empty_like(logvar)
    # A missing input is never read; an empty tensor of its dtype stands in for the pointer (the
    # KL gradient's dtype is the kernel's math dtype). B * Z is passed from here so that it is an
    # int64 wherever it needs to be.
    launch_rows(
        reparameterize_backward_kernel,
        B,
        Z,
        mu,
        grad_z if grad_z is not None else mu,
        grad_kl if grad_kl is not None else mu.new_empty(0, dtype=kl_dtype),
        mu,
        logvar,
        seed,
        grad_mu,
        grad_logvar,
        B,
        Z,
        n_samples,
        B * Z,
        MC=mc,
        STL=mc and stl,
        HAS_GRAD_Z=grad_z is not None,
        HAS_GRAD_KL=grad_kl is not None,
    )
    return grad_mu, grad_logvar
