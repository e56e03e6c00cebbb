"""Triton kernels of the per-row Bernoulli log-likelihood from logits (docs/paper.md, Bernoulli MLP
decoder) and of its backward, which recomputes the gradient from the logits and targets:

    log p(x|z) = sum_d x a - softplus(a),  softplus(a) = max(a, 0) + log1p(exp(-|a|))
               = sum_d s a - log1p(exp(-|a|)),  s = x - 1 for a >= 0, x for a < 0
    d/da = g (x - sigmoid(a)),  g the row's upstream gradient

s a is x a - max(a, 0) without its inf - inf at a = +inf; s = 0 gives the limit 0 (0 log 0 = 0)
where s a would be 0 * inf (a = +inf with x = 1, a = -inf with x = 0). A NaN logit or target still
gives NaN (as csrc/cpu/bernoulli.cpp).

Shapes: logits [N, D] contiguous; x [Nx, D] contiguous, N a multiple of Nx (row n reads
x[n % Nx]), float, uint8 or bool; log_prob and g [N] in the math dtype (float32; float64 for
float64 logits); grad [N, D] in the logits' dtype. Targets outside [0, 1] are not checked here (that
would cost a device sync).

With CONTINUOUS, the same kernels make the continuous Bernoulli's (continuous_bernoulli.py has the
math): the term takes log(u / (1 - e)), u = |a|, where the Bernoulli's takes log1p(e), below u = 1
its series instead, and the gradient adds 1/a - 1/sinh(a).
"""

import torch
import triton
import triton.language as tl

from ._launch import launch_rows
from ._sums import compensated_add, compensated_value
from ._tiles import row_block, target_tile, tile


@triton.jit
def log1p_small(e, u):
    """log(1 + e) for e in [0, 1] given u = 1 + e, accurate where 1 + e rounds: log(u) * e / (u - 1)
    cancels the rounding of u (Goldberg); u == 1 means log1p(e) = e to working precision."""
    return tl.where(u == 1.0, e, tl.log(u) * (e / tl.where(u == 1.0, 1.0, u - 1.0)))


@triton.jit
def _log_sinhc(w):
    """log(sinh(u/2) / (u/2)) for w = u^2 < 1 as its series, to double's precision (bernoulli numbers;
    csrc/common/continuous_bernoulli.h)."""
    p = -3617.0 / 170729965486080000.0
    p = p * w + 1.0 / 1046139494400.0
    p = p * w - 691.0 / 15692092416000.0
    p = p * w + 1.0 / 479001600.0
    p = p * w - 1.0 / 9676800.0
    p = p * w + 1.0 / 181440.0
    p = p * w - 1.0 / 2880.0
    p = p * w + 1.0 / 24.0
    return p * w


@triton.jit
def _dratio_series(u):
    """R'(u) = 1/u - 1/(e^u - 1) for u < 1 as its series, to double's precision."""
    w = u * u
    p = 174611.0 / 802857662698291200000.0
    p = p * w - 43867.0 / 5109094217170944000.0
    p = p * w + 3617.0 / 10670622842880000.0
    p = p * w - 1.0 / 74724249600.0
    p = p * w + 691.0 / 1307674368000.0
    p = p * w - 1.0 / 47900160.0
    p = p * w + 1.0 / 1209600.0
    p = p * w - 1.0 / 30240.0
    p = p * w + 1.0 / 720.0
    p = p * w - 1.0 / 12.0
    return 0.5 + u * p


@triton.jit
def _continuous_term(a, s, e):
    """The continuous Bernoulli's s a + R(u), u = |a|: R(u) = log(u / (1 - e)), its series below
    u = 1; past the float range R is +inf, and 0 beside s != 0 (the limit s a = -inf)."""
    u = tl.abs(a)
    small = u < 1.0
    sa = tl.where(s == 0, 0.0, s * a)
    # the closed form's ratio made 1 where the series serves: no 0/0 or log 0 in the unused lanes
    ratio = tl.where(small, 1.0, u / tl.where(small, 1.0, 1.0 - e))
    r = tl.where(small, 0.5 * u - _log_sinhc(u * u), tl.log(ratio))
    return sa + tl.where((u == float("inf")) & (s != 0), 0.0, r)


@triton.jit
def bernoulli_forward_kernel(
    logits_ptr,
    x_ptr,
    log_prob_ptr,
    N,
    Nx,
    D,
    CONTINUOUS: tl.constexpr,
    BLOCK_ROWS: tl.constexpr,
    BLOCK_COLS: tl.constexpr,
):
    rows, row_ok = row_block(tl.program_id(0), N, BLOCK_ROWS)
    math_t = log_prob_ptr.dtype.element_ty
    # Compensated per lane: a lane adds a term per tile, hundreds on wide rows (see _sums.py).
    acc = tl.zeros([BLOCK_ROWS, BLOCK_COLS], dtype=math_t)
    err = tl.zeros([BLOCK_ROWS, BLOCK_COLS], dtype=math_t)
    for start in range(0, D, BLOCK_COLS):
        cols, mask, at = tile(rows, row_ok, start, D, BLOCK_COLS)
        a = tl.load(logits_ptr + at, mask=mask, other=0).to(math_t)
        x = target_tile(x_ptr, rows, Nx, cols, D, mask).to(math_t)
        e = tl.exp(-tl.abs(a))
        s = tl.where(a < 0, x, x - 1.0)
        if CONTINUOUS:
            term = _continuous_term(a, s, e)
        else:
            term = tl.where(s == 0, 0.0, s * a) - log1p_small(e, 1.0 + e)
        acc, err = compensated_add(acc, err, tl.where(mask, term, 0.0))
    tl.store(log_prob_ptr + rows, tl.sum(compensated_value(acc, err), axis=1), mask=row_ok)


@triton.jit
def bernoulli_backward_kernel(
    grad_log_prob_ptr,
    logits_ptr,
    x_ptr,
    grad_ptr,
    N,
    Nx,
    D,
    CONTINUOUS: tl.constexpr,
    BLOCK_ROWS: tl.constexpr,
    BLOCK_COLS: tl.constexpr,
):
    rows, row_ok = row_block(tl.program_id(0), N, BLOCK_ROWS)
    math_t = grad_log_prob_ptr.dtype.element_ty
    g = tl.load(grad_log_prob_ptr + rows, mask=row_ok, other=0)[:, None]
    for start in range(0, D, BLOCK_COLS):
        cols, mask, at = tile(rows, row_ok, start, D, BLOCK_COLS)
        a = tl.load(logits_ptr + at, mask=mask, other=0).to(math_t)
        x = target_tile(x_ptr, rows, Nx, cols, D, mask).to(math_t)
        e = tl.exp(-tl.abs(a))
        r = 1.0 / (1.0 + e)
        if CONTINUOUS:
            # x - [a >= 0] + sign(a) R'(u), R'(u) = 1/u - e / (1 - e), its series below u = 1
            u = tl.abs(a)
            small = u < 1.0
            # the closed form's divisors made 1 where the series serves: no 0/0 in the unused lanes
            dr = tl.where(small, _dratio_series(u), 1.0 / tl.where(small, 1.0, u) - e / tl.where(small, 1.0, 1.0 - e))
            grad = tl.where(a >= 0, x - 1.0 + dr, x - dr)
        else:
            # sigmoid(a) = 1 / (1 + e) for a >= 0, e / (1 + e) below
            grad = x - tl.where(a >= 0, r, e * r)
        tl.store(grad_ptr + at, (g * grad).to(grad_ptr.dtype.element_ty), mask=mask)


def forward(logits: torch.Tensor, x: torch.Tensor, row_dtype: torch.dtype, continuous: bool = False) -> torch.Tensor:
    """log_prob [N] for contiguous logits and x (continuous: the continuous Bernoulli's)."""
    N, D = logits.shape
    log_prob = logits.new_empty((N,), dtype=row_dtype)
    launch_rows(bernoulli_forward_kernel, N, D, logits, logits, x, log_prob, N, x.shape[0], D, CONTINUOUS=continuous)
    return log_prob


def backward(grad: torch.Tensor, logits: torch.Tensor, x: torch.Tensor, continuous: bool = False) -> torch.Tensor:
    """grad_logits [N, D] for the contiguous row gradients grad [N], logits and x (continuous: the
    continuous Bernoulli's)."""
    N, D = logits.shape
    grad_logits = torch.empty_like(logits)
    launch_rows(
        bernoulli_backward_kernel, N, D, logits, grad, logits, x, grad_logits, N, x.shape[0], D, CONTINUOUS=continuous
    )
    return grad_logits
