"""Triton kernel of the per-row Gaussian log-likelihood (PAPER.md, Gaussian MLP decoder), with its
gradients made in the same pass:

    log N(x; m, exp(s)) = -1/2 sum_d (log 2pi + s + (x - m)^2 exp(-s))
    d/dm = (x - m) exp(-s),  d/ds = ((x - m)^2 exp(-s) - 1) / 2

Shapes: mean, logvar [N, D] contiguous, of one dtype; x [Nx, D] contiguous, N a multiple of Nx
(row n reads x[n % Nx]); log_prob [N] in the math dtype (float32; float64 for float64 values);
grad_mean, grad_logvar [N, D] in the values' dtype.
"""

import math

import torch
import triton
import triton.language as tl

from ._launch import on_device, row_blocks
from ._tiles import row_block, tile

LOG_2PI = tl.constexpr(math.log(2 * math.pi))


@triton.jit
def gaussian_forward_kernel(x_ptr, mean_ptr, logvar_ptr, log_prob_ptr, grad_mean_ptr, grad_logvar_ptr, N, Nx, D,
                            COMPUTE_GRAD: tl.constexpr, BLOCK_ROWS: tl.constexpr, BLOCK_COLS: tl.constexpr):
    rows, row_ok = row_block(tl.program_id(0), N, BLOCK_ROWS)
    x_rows = rows % Nx
    math_t = log_prob_ptr.dtype.element_ty
    acc = tl.zeros([BLOCK_ROWS, BLOCK_COLS], dtype=math_t)
    for start in range(0, D, BLOCK_COLS):
        cols, mask, at = tile(rows, row_ok, start, D, BLOCK_COLS)
        x = tl.load(x_ptr + x_rows[:, None] * D + cols[None, :], mask=mask, other=0).to(math_t)
        m = tl.load(mean_ptr + at, mask=mask, other=0).to(math_t)
        s = tl.load(logvar_ptr + at, mask=mask, other=0).to(math_t)
        d = x - m
        precision = tl.exp(-s)
        q = d * d * precision
        acc += tl.where(mask, LOG_2PI + s + q, 0.0)
        if COMPUTE_GRAD:
            tl.store(grad_mean_ptr + at, (d * precision).to(grad_mean_ptr.dtype.element_ty), mask=mask)
            tl.store(grad_logvar_ptr + at, (0.5 * (q - 1.0)).to(grad_logvar_ptr.dtype.element_ty), mask=mask)
    tl.store(log_prob_ptr + rows, -0.5 * tl.sum(acc, axis=1), mask=row_ok)


def forward(x: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor, compute_grad: bool,
            row_dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(log_prob [N], grad_mean, grad_logvar [N, D] or [0] without compute_grad) for contiguous inputs."""
    N, D = mean.shape
    log_prob = mean.new_empty((N,), dtype=row_dtype)
    grad_shape = (N, D) if compute_grad else (0,)
    grad_mean, grad_logvar = mean.new_empty(grad_shape), mean.new_empty(grad_shape)
    if N == 0:
        return log_prob, grad_mean, grad_logvar
    kernel = gaussian_forward_kernel
    blocks = row_blocks(kernel, N, D)
    with on_device(mean):
        kernel[(triton.cdiv(N, blocks["BLOCK_ROWS"]),)](
            x, mean, logvar, log_prob, grad_mean if compute_grad else mean, grad_logvar if compute_grad else mean,
            N, x.shape[0], D, COMPUTE_GRAD=compute_grad, **blocks)
    return log_prob, grad_mean, grad_logvar
