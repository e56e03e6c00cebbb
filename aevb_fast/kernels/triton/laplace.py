"""Triton kernels of the per-row Laplace log-likelihood and of its backward, which recomputes the
gradients from the inputs (s = logscale, d = x - loc; the same math as csrc/common/laplace.h):

    log p(x|loc, s) = -sum_d (log 2 + s + |d| exp(-s)),  |d| exp(-s) made as (|d| e) e, e = exp(-s/2)
    d/dloc = g sign(d) exp(-s),  d/ds = g (|d| exp(-s) - 1),  g the row's upstream gradient

Shapes: loc, logscale [N, D] contiguous, of one dtype; x [Nx, D] contiguous, N a multiple of Nx
(row n reads x[n % Nx]); log_prob and g [N] in the math dtype (float32; float64 for float64
values); grad_loc, grad_logscale [N, D] in the values' dtype.
"""

import math

import torch
import triton
import triton.language as tl

from ._launch import launch_rows
from ._sums import compensated_add, compensated_value
from ._tiles import row_block, target_tile, tile

LOG_2 = tl.constexpr(math.log(2))


@triton.jit
def _scaled_residual(d, e):
    return tl.where(d == 0, 0.0, (tl.abs(d) * e) * e)


@triton.jit
def laplace_forward_kernel(
    x_ptr, loc_ptr, logscale_ptr, log_prob_ptr, N, Nx, D, BLOCK_ROWS: tl.constexpr, BLOCK_COLS: tl.constexpr
):
    rows, row_ok = row_block(tl.program_id(0), N, BLOCK_ROWS)
    math_t = log_prob_ptr.dtype.element_ty
    # Compensated per lane: a lane adds a term per tile, hundreds on wide rows (see _sums.py).
    acc = tl.zeros([BLOCK_ROWS, BLOCK_COLS], dtype=math_t)
    err = tl.zeros([BLOCK_ROWS, BLOCK_COLS], dtype=math_t)
    for start in range(0, D, BLOCK_COLS):
        cols, mask, at = tile(rows, row_ok, start, D, BLOCK_COLS)
        x = target_tile(x_ptr, rows, Nx, cols, D, mask).to(math_t)
        d = x - tl.load(loc_ptr + at, mask=mask, other=0).to(math_t)
        s = tl.load(logscale_ptr + at, mask=mask, other=0).to(math_t)
        term = LOG_2 + s + _scaled_residual(d, tl.exp(-0.5 * s))
        acc, err = compensated_add(acc, err, tl.where(mask, term, 0.0))
    tl.store(log_prob_ptr + rows, -tl.sum(compensated_value(acc, err), axis=1), mask=row_ok)


@triton.jit
def laplace_backward_kernel(
    grad_log_prob_ptr,
    x_ptr,
    loc_ptr,
    logscale_ptr,
    grad_loc_ptr,
    grad_logscale_ptr,
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
        d = x - tl.load(loc_ptr + at, mask=mask, other=0).to(math_t)
        e = tl.exp(-0.5 * tl.load(logscale_ptr + at, mask=mask, other=0).to(math_t))
        # sign(d) exp(-s): 0 at d == 0 for every s (not 0 * inf), NaN for a NaN d, as the reference's
        sign = tl.where(d > 0, 1.0, tl.where(d < 0, -1.0, d))
        grad_loc = tl.where(d == 0, g * 0.0, g * sign * e * e)
        tl.store(grad_loc_ptr + at, grad_loc.to(grad_loc_ptr.dtype.element_ty), mask=mask)
        grad_s = g * (_scaled_residual(d, e) - 1.0)
        tl.store(grad_logscale_ptr + at, grad_s.to(grad_logscale_ptr.dtype.element_ty), mask=mask)


def forward(x: torch.Tensor, loc: torch.Tensor, logscale: torch.Tensor, row_dtype: torch.dtype) -> torch.Tensor:
    """log_prob [N] for contiguous inputs."""
    N, D = loc.shape
    log_prob = loc.new_empty((N,), dtype=row_dtype)
    launch_rows(laplace_forward_kernel, N, D, loc, x, loc, logscale, log_prob, N, x.shape[0], D)
    return log_prob


def backward(
    grad: torch.Tensor, x: torch.Tensor, loc: torch.Tensor, logscale: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(grad_loc, grad_logscale) [N, D] for the contiguous row gradients grad [N] and inputs."""
    N, D = loc.shape
    grad_loc, grad_logscale = torch.empty_like(loc), torch.empty_like(loc)
    launch_rows(laplace_backward_kernel, N, D, loc, grad, x, loc, logscale, grad_loc, grad_logscale, N, x.shape[0], D)
    return grad_loc, grad_logscale
