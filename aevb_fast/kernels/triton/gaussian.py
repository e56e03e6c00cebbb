"""Triton kernels of the per-row Gaussian log-likelihood (docs/paper.md, Gaussian MLP decoder) and of
its backward, which recomputes the gradients from the inputs:

    log N(x; m, exp(s)) = -1/2 sum_d (log 2pi + s + r^2),  r = (x - m) exp(-s/2)
    d/dm = g r exp(-s/2),  d/ds = g (r^2 - 1) / 2,  g the row's upstream gradient

The standardized residual r keeps x == m finite for every finite s (see csrc/cpu/gaussian.cpp).

Shapes: mean, logvar [N, D] contiguous, of one dtype; x [Nx, D] contiguous, N a multiple of Nx
(row n reads x[n % Nx]); log_prob and g [N] in the math dtype (float32; float64 for float64
values); grad_mean, grad_logvar [N, D] in the values' dtype.
"""

import math

import torch
import triton
import triton.language as tl

from ._launch import launch_rows
from ._sums import compensated_add, compensated_value
from ._tiles import row_block, target_tile, tile

LOG_2PI = tl.constexpr(math.log(2 * math.pi))


@triton.jit
def gaussian_forward_kernel(
    x_ptr, mean_ptr, logvar_ptr, log_prob_ptr, N, Nx, D, BLOCK_ROWS: tl.constexpr, BLOCK_COLS: tl.constexpr
):
    rows, row_ok = row_block(tl.program_id(0), N, BLOCK_ROWS)
    math_t = log_prob_ptr.dtype.element_ty
    # Compensated per lane: a lane adds a term per tile, hundreds on wide rows (see _sums.py).
    acc = tl.zeros([BLOCK_ROWS, BLOCK_COLS], dtype=math_t)
    err = tl.zeros([BLOCK_ROWS, BLOCK_COLS], dtype=math_t)
    for start in range(0, D, BLOCK_COLS):
        cols, mask, at = tile(rows, row_ok, start, D, BLOCK_COLS)
        x = target_tile(x_ptr, rows, Nx, cols, D, mask).to(math_t)
        d = x - tl.load(mean_ptr + at, mask=mask, other=0).to(math_t)
        s = tl.load(logvar_ptr + at, mask=mask, other=0).to(math_t)
        r = tl.where(d == 0, 0.0, d * tl.exp(-0.5 * s))
        acc, err = compensated_add(acc, err, tl.where(mask, LOG_2PI + s + r * r, 0.0))
    tl.store(log_prob_ptr + rows, -0.5 * tl.sum(compensated_value(acc, err), axis=1), mask=row_ok)


@triton.jit
def gaussian_backward_kernel(
    grad_log_prob_ptr,
    x_ptr,
    mean_ptr,
    logvar_ptr,
    grad_mean_ptr,
    grad_logvar_ptr,
    N,
    Nx,
    D,
    BLOCK_ROWS: tl.constexpr,
    BLOCK_COLS: tl.constexpr,
):
    rows, row_ok = row_block(tl.program_id(0), N, BLOCK_ROWS)
    math_t = grad_log_prob_ptr.dtype.element_ty
    g = tl.load(grad_log_prob_ptr + rows, mask=row_ok, other=0)[:, None]
    for start in range(0, D, BLOCK_COLS):
        cols, mask, at = tile(rows, row_ok, start, D, BLOCK_COLS)
        x = target_tile(x_ptr, rows, Nx, cols, D, mask).to(math_t)
        d = x - tl.load(mean_ptr + at, mask=mask, other=0).to(math_t)
        e = tl.exp(-0.5 * tl.load(logvar_ptr + at, mask=mask, other=0).to(math_t))
        r = tl.where(d == 0, 0.0, d * e)
        tl.store(grad_mean_ptr + at, tl.where(d == 0, 0.0, g * r * e).to(grad_mean_ptr.dtype.element_ty), mask=mask)
        tl.store(grad_logvar_ptr + at, (0.5 * g * (r * r - 1.0)).to(grad_logvar_ptr.dtype.element_ty), mask=mask)


def forward(x: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor, row_dtype: torch.dtype) -> torch.Tensor:
    """log_prob [N] for contiguous inputs."""
    N, D = mean.shape
    log_prob = mean.new_empty((N,), dtype=row_dtype)
    launch_rows(gaussian_forward_kernel, N, D, mean, x, mean, logvar, log_prob, N, x.shape[0], D)
    return log_prob


def backward(
    grad: torch.Tensor, x: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(grad_mean, grad_logvar) [N, D] for the contiguous row gradients grad [N] and inputs."""
    N, D = mean.shape
    grad_mean, grad_logvar = torch.empty_like(mean), torch.empty_like(mean)
    launch_rows(gaussian_backward_kernel, N, D, mean, grad, x, mean, logvar, grad_mean, grad_logvar, N, x.shape[0], D)
    return grad_mean, grad_logvar
