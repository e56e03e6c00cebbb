"""aevb_fast::gaussian_log_prob: per-row Gaussian log-likelihood (PAPER.md, Gaussian MLP decoder),
log N(x; m, exp(s)) = -1/2 sum_d (log 2pi + s + (x - m)^2 exp(-s)), with
d/dm = (x - m) exp(-s) and d/ds = ((x - m)^2 exp(-s) - 1) / 2 made in the same pass.

Shapes: mean, logvar [N, D] of one dtype; x [Nx, D] with N a multiple of Nx (row n reads
x[n % Nx]); log_prob [N] float32 (float64 for float64 values); grad_mean, grad_logvar [N, D] in
the values' dtype, or [0] without compute_grad.
"""

import torch

from ._library import define, require, row_dtype, triton_kernels
from ._native import dtype_code, empty, native, threads
from ._targets import fold_rows, kernel_target
from .scale_rows import scale_rows


def _check(x, mean, logvar):
    require(mean.dim() == 2 and mean.shape == logvar.shape and mean.dtype == logvar.dtype
            and mean.is_floating_point(),
            lambda: f"aevb_fast::gaussian_log_prob: mean and logvar must be [N, D] of one floating dtype, got "
            f"{tuple(mean.shape)} {mean.dtype} and {tuple(logvar.shape)} {logvar.dtype}")
    require(x.dim() == 2 and x.shape[1] == mean.shape[1] and (x.shape[0] > 0 or mean.shape[0] == 0)
            and mean.shape[0] % max(x.shape[0], 1) == 0,
            lambda: f"aevb_fast::gaussian_log_prob: x must be [Nx, D] with N a multiple of Nx, got {tuple(x.shape)} "
            f"beside {tuple(mean.shape)}")
    require(x.is_floating_point() or x.dtype in (torch.uint8, torch.bool),
            lambda: f"aevb_fast::gaussian_log_prob: x must be floating, uint8 or bool, got {x.dtype}")


def _forward_cpu(x, mean, logvar, compute_grad):
    _check(x, mean, logvar)
    mean, logvar = mean.contiguous(), logvar.contiguous()
    x = kernel_target(x, mean.dtype)
    N, D = mean.shape
    log_prob = mean.new_empty((N,), dtype=row_dtype(mean.dtype))
    grad_shape = (N, D) if compute_grad else (0,)
    grad_mean, grad_logvar = empty(grad_shape, mean.dtype), empty(grad_shape, mean.dtype)
    native.gaussian_forward(
        dtype_code(mean.dtype), dtype_code(x.dtype), x.data_ptr(), mean.data_ptr(), logvar.data_ptr(),
        log_prob.data_ptr(), grad_mean.data_ptr() if compute_grad else 0,
        grad_logvar.data_ptr() if compute_grad else 0, N, x.shape[0], D, threads())
    return log_prob, grad_mean, grad_logvar


def _forward_triton(x, mean, logvar, compute_grad):
    _check(x, mean, logvar)
    return triton_kernels().gaussian.forward(kernel_target(x, mean.dtype), mean.contiguous(), logvar.contiguous(),
                                             compute_grad, row_dtype(mean.dtype))


def _fake(x, mean, logvar, compute_grad, backend):
    N, D = mean.shape
    grad_shape = (N, D) if compute_grad else (0,)
    return mean.new_empty((N,), dtype=row_dtype(mean.dtype)), mean.new_empty(grad_shape), mean.new_empty(grad_shape)


def _setup_context(ctx, inputs, output):
    x, mean, logvar, compute_grad, backend = inputs
    ctx.compute_grad, ctx.backend = compute_grad, backend
    ctx.mark_non_differentiable(output[1], output[2])
    ctx.save_for_backward(output[1], output[2], x if x.requires_grad else None)


def _backward(ctx, grad_log_prob, _, __):
    grad_mean, grad_logvar, x = ctx.saved_tensors
    if any(ctx.needs_input_grad[:3]) and not ctx.compute_grad:
        raise RuntimeError("aevb_fast::gaussian_log_prob ran with compute_grad=False, so it has no gradients; "
                           "call it with compute_grad=True")
    d_mean = scale_rows(grad_mean, grad_log_prob, ctx.backend) if any(ctx.needs_input_grad[:2]) else None
    # log N is a function of x - m: d/dx = -d/dm.
    d_x = fold_rows(-d_mean, x) if ctx.needs_input_grad[0] else None
    d_logvar = scale_rows(grad_logvar, grad_log_prob, ctx.backend) if ctx.needs_input_grad[2] else None
    return d_x, d_mean if ctx.needs_input_grad[1] else None, d_logvar, None, None


gaussian_log_prob = define(
    "gaussian_log_prob",
    "(Tensor x, Tensor mean, Tensor logvar, bool compute_grad, str backend) -> (Tensor, Tensor, Tensor)",
    {"cpu": _forward_cpu, "triton": _forward_triton}, _fake, _setup_context, _backward,
)
