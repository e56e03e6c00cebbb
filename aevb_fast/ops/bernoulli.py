"""aevb_fast::bernoulli_log_prob: per-row Bernoulli log-likelihood from logits (PAPER.md,
Bernoulli MLP decoder), log p(x|z) = sum_d x a - softplus(a), with d/da = x - sigmoid(a) made in the
same pass when compute_grad is set.

Shapes: logits [N, D]; x [Nx, D] with N a multiple of Nx (row n reads x[n % Nx], so L samples of
one batch share its targets), float, uint8 or bool with values in [0, 1]; log_prob [N] float32
(float64 for float64 logits); grad_logits [N, D] in the logits' dtype, or [0] without compute_grad.
The CPU kernel checks the targets' range in the same pass and raises ValueError on a violation;
the Triton kernel does not (it would cost a device sync).
"""

import torch

from ._library import define, require, row_dtype, triton_kernels
from ._native import dtype_code, empty, native, threads
from ._targets import fold_rows, kernel_target
from .scale_rows import scale_rows


def _check(logits, x):
    require(logits.dim() == 2 and x.dim() == 2 and logits.shape[1] == x.shape[1]
            and (x.shape[0] > 0 or logits.shape[0] == 0) and logits.shape[0] % max(x.shape[0], 1) == 0,
            lambda: f"aevb_fast::bernoulli_log_prob: logits must be [N, D] and x [Nx, D] with N a multiple of Nx, got "
            f"{tuple(logits.shape)} and {tuple(x.shape)}")
    require(logits.is_floating_point(), lambda: f"aevb_fast::bernoulli_log_prob: logits must be floating, got {logits.dtype}")
    require(x.is_floating_point() or x.dtype in (torch.uint8, torch.bool),
            lambda: f"aevb_fast::bernoulli_log_prob: x must be floating, uint8 or bool, got {x.dtype}")


def _forward_cpu(logits, x, compute_grad):
    _check(logits, x)
    logits = logits.contiguous()
    x = kernel_target(x, logits.dtype)
    N, D = logits.shape
    log_prob = logits.new_empty((N,), dtype=row_dtype(logits.dtype))
    grad = empty((N, D) if compute_grad else (0,), logits.dtype)
    outside = native.bernoulli_forward(
        dtype_code(logits.dtype), dtype_code(x.dtype), logits.data_ptr(), x.data_ptr(), log_prob.data_ptr(),
        grad.data_ptr() if compute_grad else 0, N, x.shape[0], D, threads())
    if outside:
        raise ValueError("x holds values outside [0, 1]; Bernoulli targets must be probabilities in [0, 1]")
    return log_prob, grad


def _forward_triton(logits, x, compute_grad):
    _check(logits, x)
    return triton_kernels().bernoulli.forward(logits.contiguous(), kernel_target(x, logits.dtype), compute_grad,
                                              row_dtype(logits.dtype))


def _fake(logits, x, compute_grad, backend):
    N, D = logits.shape
    return logits.new_empty((N,), dtype=row_dtype(logits.dtype)), logits.new_empty((N, D) if compute_grad else (0,))


def _setup_context(ctx, inputs, output):
    logits, x, compute_grad, backend = inputs
    ctx.compute_grad, ctx.backend = compute_grad, backend
    ctx.mark_non_differentiable(output[1])
    # d/dx = a: the logits are kept only when x itself needs a gradient.
    ctx.save_for_backward(output[1], logits if x.requires_grad else None, x if x.requires_grad else None)


def _backward(ctx, grad_log_prob, _):
    grad, logits, x = ctx.saved_tensors
    grad_logits = grad_x = None
    if ctx.needs_input_grad[0]:
        if not ctx.compute_grad:
            raise RuntimeError("aevb_fast::bernoulli_log_prob ran with compute_grad=False, so it has no gradient "
                               "for the logits; call it with compute_grad=True")
        grad_logits = scale_rows(grad, grad_log_prob, ctx.backend)
    if ctx.needs_input_grad[1]:
        grad_x = fold_rows(scale_rows(logits.contiguous(), grad_log_prob, ctx.backend), x)
    return grad_logits, grad_x, None, None


bernoulli_log_prob = define(
    "bernoulli_log_prob",
    "(Tensor logits, Tensor x, bool compute_grad, str backend) -> (Tensor, Tensor)",
    {"cpu": _forward_cpu, "triton": _forward_triton}, _fake, _setup_context, _backward,
)
