"""Triton kernels of the per-row discretized logistic mixture log-likelihood (Salimans et al. 2017,
in [0, 1]: csrc/common/discretized_logistic_mixture.h has the math) and of its backward:

    log p(x|z) = sum_d logsumexp_k(log softmax(logit)_k + log P_k(x_d))
    d/dlogit_k = g (r_k - w_k),  d/dmean_k = g r_k d log P_k / d mean,  d/dlog_scale_k likewise

with r the components' responsibilities and w their weights, g the row's upstream gradient. A tile
holds pixels; the K components are walked in turn (strided loads: a pixel's components lie
together) with running logsumexps; the backward walks them twice, for the sums and for the
gradients.

Shapes: values [N, D, K] contiguous, of one dtype; x [Nx, D] contiguous, N a multiple of Nx (row n
reads x[n % Nx]), grey levels v / 255; log_prob and g [N] in the math dtype (float32; float64 for
float64 values); the gradients [N, D, K] in the values' dtype.
"""

import math

import torch
import triton
import triton.language as tl

from ._launch import launch_rows
from ._sums import compensated_add, compensated_value
from ._tiles import row_block, target_tile, tile
from .bernoulli import log1p_small

HALF_BIN = tl.constexpr(0.5 / 255)
LOG_255 = tl.constexpr(math.log(255))
MIN_MASS = tl.constexpr(1e-5)
MIN_LOG_SCALE = tl.constexpr(-7.0)
NEG_INF = tl.constexpr(-math.inf)


@triton.jit
def _sigmoid(y, e):
    r = 1.0 / (1.0 + e)
    return tl.where(y >= 0, r, e * r)


@triton.jit
def _component(x, mean, raw_log_scale):
    """(log P, d log P / d mean, d log P / d log_scale) of one component, every case computed and one
    selected, as the C++ kernels do; log scales below -7 count as -7."""
    clamped = raw_log_scale < MIN_LOG_SCALE
    log_scale = tl.where(clamped, MIN_LOG_SCALE, raw_log_scale)
    a = tl.exp(-log_scale)
    c = x - mean
    plus = a * (c + HALF_BIN)
    minus = a * (c - HALF_BIN)
    mid = a * c
    e_plus = tl.exp(-tl.abs(plus))
    e_minus = tl.exp(-tl.abs(minus))
    e_mid = tl.exp(-tl.abs(mid))
    s_plus = _sigmoid(plus, e_plus)
    s_minus = _sigmoid(minus, e_minus)
    n_plus = _sigmoid(-plus, e_plus)
    n_minus = _sigmoid(-minus, e_minus)
    # the mass as sigmoid(plus) sigmoid(-minus) (1 - exp(-a/255)), every factor exact (the header's)
    d = a * (2 * HALF_BIN)
    series = d * (1.0 - d * (0.5 - d * (1.0 / 6 - d * (1.0 / 24 - d * (1.0 / 120 - d / 720)))))
    q = tl.where(d < 0.01, series, 1.0 - tl.exp(-d))
    mass = s_plus * n_minus * q
    low = x < HALF_BIN
    high = x > 1.0 - HALF_BIN
    dense = mass > MIN_MASS
    inside = (low == 0) & (high == 0)
    in_bin = inside & dense
    tail = inside & (dense == 0)  # NaN x or mass: here, where NaN propagates
    # d log P / d (a (x - mu)): for a bin 1 - sigmoid(plus) - sigmoid(minus), as the C++ header
    shift = tl.where(
        low, n_plus, tl.where(high, -s_minus, tl.where(in_bin, n_plus - s_minus, 1.0 - 2.0 * _sigmoid(mid, e_mid)))
    )
    arg = tl.where(low, plus, tl.where(high | in_bin, minus, mid))
    width = tl.where(in_bin, d * n_plus / tl.where(in_bin, n_minus * q, 1.0), 0.0)  # no 0/0 in unused lanes
    log_bin = tl.where(
        low,
        tl.minimum(plus, 0.0) - log1p_small(e_plus, 1.0 + e_plus),
        tl.where(
            high, tl.minimum(-minus, 0.0) - log1p_small(e_minus, 1.0 + e_minus), tl.log(tl.where(dense, mass, 1.0))
        ),
    )
    log_p = tl.where(tail, -tl.abs(mid) - 2.0 * log1p_small(e_mid, 1.0 + e_mid) - log_scale - LOG_255, log_bin)
    d_mean = -a * shift
    d_log_scale = tl.where(clamped, 0.0, -(arg * shift + width) - tl.where(tail, 1.0, 0.0))
    return log_p, d_mean, d_log_scale


@triton.jit
def _logsumexp_add(top, total, v):
    """A running logsumexp (the largest term, the sum of exp(term - largest)) with v added: rescaled
    where the largest moves; while every term is -inf the sum stays 0, and a NaN term makes it NaN."""
    new = tl.maximum(top, v, propagate_nan=tl.PropagateNan.ALL)
    total = tl.where(new == NEG_INF, 0.0, total * tl.exp(top - new) + tl.exp(v - new))
    return new, total


@triton.jit
def _logsumexp_value(top, total):
    return tl.where(top == NEG_INF, NEG_INF, top + tl.log(total))


@triton.jit
def _sums(x, logits_ptr, means_ptr, log_scales_ptr, at, mask, K, math_t):
    """The tile's logsumexp_k(logit) (norm), then logsumexp_k((logit - norm) + log P) (joint, the
    pixels' log P): the log-softmax taken first, so that huge logits do not absorb log P."""
    top = tl.full(x.shape, NEG_INF, math_t)
    total = tl.zeros(x.shape, math_t)
    for k in range(0, K):
        top, total = _logsumexp_add(top, total, tl.load(logits_ptr + at * K + k, mask=mask, other=0).to(math_t))
    norm = _logsumexp_value(top, total)
    top = tl.full(x.shape, NEG_INF, math_t)
    total = tl.zeros(x.shape, math_t)
    for k in range(0, K):
        i = at * K + k
        logit = tl.load(logits_ptr + i, mask=mask, other=0).to(math_t)
        mean = tl.load(means_ptr + i, mask=mask, other=0).to(math_t)
        log_scale = tl.load(log_scales_ptr + i, mask=mask, other=0).to(math_t)
        log_p, _, _ = _component(x, mean, log_scale)
        top, total = _logsumexp_add(top, total, (logit - norm) + log_p)
    return _logsumexp_value(top, total), norm


@triton.jit
def discretized_logistic_mixture_forward_kernel(
    x_ptr,
    logits_ptr,
    means_ptr,
    log_scales_ptr,
    log_prob_ptr,
    N,
    Nx,
    D,
    K,
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
        x = target_tile(x_ptr, rows, Nx, cols, D, mask).to(math_t)
        joint, norm = _sums(x, logits_ptr, means_ptr, log_scales_ptr, at, mask, K, math_t)
        acc, err = compensated_add(acc, err, tl.where(mask, joint, 0.0))
    tl.store(log_prob_ptr + rows, tl.sum(compensated_value(acc, err), axis=1), mask=row_ok)


@triton.jit
def discretized_logistic_mixture_backward_kernel(
    grad_log_prob_ptr,
    x_ptr,
    logits_ptr,
    means_ptr,
    log_scales_ptr,
    grad_logits_ptr,
    grad_means_ptr,
    grad_log_scales_ptr,
    N,
    Nx,
    D,
    K,
    BLOCK_ROWS: tl.constexpr,
    BLOCK_COLS: tl.constexpr,
):
    rows, row_ok = row_block(tl.program_id(0), N, BLOCK_ROWS)
    math_t = grad_log_prob_ptr.dtype.element_ty
    g = tl.load(grad_log_prob_ptr + rows, mask=row_ok, other=0)[:, None]
    for start in range(0, D, BLOCK_COLS):
        cols, mask, at = tile(rows, row_ok, start, D, BLOCK_COLS)
        x = target_tile(x_ptr, rows, Nx, cols, D, mask).to(math_t)
        joint, norm = _sums(x, logits_ptr, means_ptr, log_scales_ptr, at, mask, K, math_t)
        for k in range(0, K):
            i = at * K + k
            logit = tl.load(logits_ptr + i, mask=mask, other=0).to(math_t)
            mean = tl.load(means_ptr + i, mask=mask, other=0).to(math_t)
            log_scale = tl.load(log_scales_ptr + i, mask=mask, other=0).to(math_t)
            log_p, d_mean, d_log_scale = _component(x, mean, log_scale)
            weight = logit - norm  # log softmax
            r = g * tl.exp(weight + log_p - joint)  # g times the component's responsibility
            out_t = grad_logits_ptr.dtype.element_ty
            tl.store(grad_logits_ptr + i, (r - g * tl.exp(weight)).to(out_t), mask=mask)
            tl.store(grad_means_ptr + i, (r * d_mean).to(out_t), mask=mask)
            tl.store(grad_log_scales_ptr + i, (r * d_log_scale).to(out_t), mask=mask)


def forward(
    x: torch.Tensor, logits: torch.Tensor, means: torch.Tensor, log_scales: torch.Tensor, row_dtype: torch.dtype
) -> torch.Tensor:
    """log_prob [N] for contiguous inputs, values [N, D, K]."""
    N, D, K = means.shape
    log_prob = means.new_empty((N,), dtype=row_dtype)
    launch_rows(
        discretized_logistic_mixture_forward_kernel,
        N,
        D,
        means,
        x,
        logits,
        means,
        log_scales,
        log_prob,
        N,
        x.shape[0],
        D,
        K,
    )
    return log_prob


def backward(
    grad: torch.Tensor, x: torch.Tensor, logits: torch.Tensor, means: torch.Tensor, log_scales: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The gradients of the logits, means and log scales [N, D, K] for the contiguous row gradients
    grad [N] and inputs."""
    N, D, K = means.shape
    grads = [torch.empty_like(means) for _ in range(3)]
    launch_rows(
        discretized_logistic_mixture_backward_kernel,
        N,
        D,
        means,
        grad,
        x,
        logits,
        means,
        log_scales,
        *grads,
        N,
        x.shape[0],
        D,
        K,
    )
    return tuple(grads)
