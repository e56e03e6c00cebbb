"""aevb_fast::gaussian_log_prob: per-row Gaussian log-likelihood (PAPER.md, Gaussian MLP decoder),
log N(x; m, exp(s)) = -1/2 sum_d (log 2pi + s + (x - m)^2 exp(-s)). Its backward,
aevb_fast::gaussian_log_prob_backward, recomputes d/dm = g (x - m) exp(-s) and
d/ds = g ((x - m)^2 exp(-s) - 1) / 2 from the saved inputs, g being each row's upstream gradient
(for the reason, see bernoulli.py).

Shapes: mean, logvar [N, D] of one dtype; x [Nx, D] with N a multiple of Nx (row n reads
x[n % Nx]); log_prob and g [N] float32 (float64 for float64 values); grad_mean, grad_logvar [N, D]
in the values' dtype.
"""

import torch

from ._library import define, require, require_one_device, row_dtype, triton_kernels
from ._native import dtype_code, empty, launch
from ._targets import fold_rows, kernel_target


def _check(x, mean, logvar, grad=None):
    require(
        mean.dim() == 2 and mean.shape == logvar.shape and mean.dtype == logvar.dtype and mean.is_floating_point(),
        lambda: (
            f"aevb_fast::gaussian_log_prob: mean and logvar must be [N, D] of one floating dtype, got "
            f"{tuple(mean.shape)} {mean.dtype} and {tuple(logvar.shape)} {logvar.dtype}"
        ),
    )
    require(
        x.dim() == 2
        and x.shape[1] == mean.shape[1]
        and (x.shape[0] > 0 or mean.shape[0] == 0)
        and mean.shape[0] % max(x.shape[0], 1) == 0,
        lambda: (
            f"aevb_fast::gaussian_log_prob: x must be [Nx, D] with N a multiple of Nx, got {tuple(x.shape)} "
            f"beside {tuple(mean.shape)}"
        ),
    )
    require(
        x.is_floating_point() or x.dtype in (torch.uint8, torch.bool),
        lambda: f"aevb_fast::gaussian_log_prob: x must be floating, uint8 or bool, got {x.dtype}",
    )
    require(
        grad is None or (grad.shape == mean.shape[:1] and grad.dtype == row_dtype(mean.dtype)),
        lambda: (
            f"aevb_fast::gaussian_log_prob_backward: grad must be [N] {row_dtype(mean.dtype)} beside mean "
            f"{tuple(mean.shape)}, got {tuple(grad.shape)} {grad.dtype}"
        ),
    )
    require_one_device(
        "gaussian_log_prob" if grad is None else "gaussian_log_prob_backward", x=x, mean=mean, logvar=logvar, grad=grad
    )


def _forward_native(x, mean, logvar):
    mean, logvar = mean.contiguous(), logvar.contiguous()
    x = kernel_target(x, mean.dtype)
    N, D = mean.shape
    log_prob = mean.new_empty((N,), dtype=row_dtype(mean.dtype))
    launch(
        "gaussian_forward",
        mean,
        dtype_code(mean.dtype),
        dtype_code(x.dtype),
        x.data_ptr(),
        mean.data_ptr(),
        logvar.data_ptr(),
        log_prob.data_ptr(),
        N,
        x.shape[0],
        D,
    )
    return log_prob


def _forward_triton(x, mean, logvar):
    return triton_kernels().gaussian.forward(
        kernel_target(x, mean.dtype), mean.contiguous(), logvar.contiguous(), row_dtype(mean.dtype)
    )


def _backward_native(grad, x, mean, logvar):
    mean, logvar, grad = mean.contiguous(), logvar.contiguous(), grad.contiguous()
    x = kernel_target(x, mean.dtype)
    N, D = mean.shape
    grad_mean, grad_logvar = empty((N, D), mean.dtype, mean), empty((N, D), mean.dtype, mean)
    launch(
        "gaussian_backward",
        mean,
        dtype_code(mean.dtype),
        dtype_code(x.dtype),
        grad.data_ptr(),
        x.data_ptr(),
        mean.data_ptr(),
        logvar.data_ptr(),
        grad_mean.data_ptr(),
        grad_logvar.data_ptr(),
        N,
        x.shape[0],
        D,
    )
    return grad_mean, grad_logvar


def _backward_triton(grad, x, mean, logvar):
    return triton_kernels().gaussian.backward(
        grad.contiguous(), kernel_target(x, mean.dtype), mean.contiguous(), logvar.contiguous()
    )


def _fake(x, mean, logvar, backend):
    return mean.new_empty(mean.shape[:1], dtype=row_dtype(mean.dtype))


def _fake_backward(grad, x, mean, logvar, backend):
    return mean.new_empty(mean.shape), mean.new_empty(mean.shape)


gaussian_log_prob_backward = define(
    "gaussian_log_prob_backward",
    "(Tensor grad, Tensor x, Tensor mean, Tensor logvar, str backend) -> (Tensor, Tensor)",
    {"cpu": _backward_native, "cuda": _backward_native, "triton": _backward_triton},
    _fake_backward,
    check=lambda grad, x, mean, logvar: _check(x, mean, logvar, grad),
)


def _setup_context(ctx, inputs, output):
    x, mean, logvar, backend = inputs
    ctx.backend = backend
    ctx.save_for_backward(x, mean, logvar)


def _backward(ctx, grad):
    x, mean, logvar = ctx.saved_tensors
    if not any(ctx.needs_input_grad[:3]):
        return None, None, None, None
    grad_mean, grad_logvar = gaussian_log_prob_backward.prechecked(grad, x, mean, logvar, ctx.backend)
    # log N is a function of x - m: d/dx = -d/dm.
    grad_x = fold_rows(-grad_mean, x) if ctx.needs_input_grad[0] else None
    return (
        grad_x,
        grad_mean if ctx.needs_input_grad[1] else None,
        grad_logvar if ctx.needs_input_grad[2] else None,
        None,
    )


gaussian_log_prob = define(
    "gaussian_log_prob",
    "(Tensor x, Tensor mean, Tensor logvar, str backend) -> Tensor",
    {"cpu": _forward_native, "cuda": _forward_native, "triton": _forward_triton},
    _fake,
    _setup_context,
    _backward,
    check=_check,
)
