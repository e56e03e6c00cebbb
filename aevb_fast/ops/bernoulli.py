"""aevb_fast::bernoulli_log_prob: per-row Bernoulli log-likelihood from logits (PAPER.md,
Bernoulli MLP decoder), log p(x|z) = sum_d x a - softplus(a). Its backward,
aevb_fast::bernoulli_log_prob_backward, recomputes d/da = g (x - sigmoid(a)) from the saved logits
and targets, g being each row's upstream gradient.

Shapes: logits [N, D]; x [Nx, D] with N a multiple of Nx (row n reads x[n % Nx], so L samples of
one batch share its targets), float, uint8 or bool with values in [0, 1]; log_prob and g [N] float32
(float64 for float64 logits); grad_logits [N, D] in the logits' dtype. The CPU kernel checks the
targets' range in the same pass and raises ValueError on a violation; the GPU kernels (Triton and
CUDA) do not (it would cost a device sync).

Why recompute rather than store the gradient in the forward pass: both move the same bytes for
float targets and recomputing moves fewer for uint8/bool ones, storing keeps a second [N, D] buffer
alive between the passes, and at [4096, 12288] float32 on the 2-core CI machine the CPU kernels'
forward + backward took about 100 ms recomputing against 137 ms storing (buffers already faulted
in).
"""

import torch

from ._library import define, require, require_one_device, row_dtype, triton_kernels
from ._native import dtype_code, empty, launch
from ._targets import fold_rows, kernel_target


def _check(logits, x, grad=None):
    require(
        logits.dim() == 2
        and x.dim() == 2
        and logits.shape[1] == x.shape[1]
        and (x.shape[0] > 0 or logits.shape[0] == 0)
        and logits.shape[0] % max(x.shape[0], 1) == 0,
        lambda: (
            f"aevb_fast::bernoulli_log_prob: logits must be [N, D] and x [Nx, D] with N a multiple of Nx, got "
            f"{tuple(logits.shape)} and {tuple(x.shape)}"
        ),
    )
    require(
        logits.is_floating_point(),
        lambda: f"aevb_fast::bernoulli_log_prob: logits must be floating, got {logits.dtype}",
    )
    require(
        x.is_floating_point() or x.dtype in (torch.uint8, torch.bool),
        lambda: f"aevb_fast::bernoulli_log_prob: x must be floating, uint8 or bool, got {x.dtype}",
    )
    require(
        grad is None or (grad.shape == logits.shape[:1] and grad.dtype == row_dtype(logits.dtype)),
        lambda: (
            f"aevb_fast::bernoulli_log_prob_backward: grad must be [N] {row_dtype(logits.dtype)} beside logits "
            f"{tuple(logits.shape)}, got {tuple(grad.shape)} {grad.dtype}"
        ),
    )
    require_one_device(
        "bernoulli_log_prob" if grad is None else "bernoulli_log_prob_backward", logits=logits, x=x, grad=grad
    )


def _forward_native(logits, x):
    logits = logits.contiguous()
    x = kernel_target(x, logits.dtype)
    N, D = logits.shape
    log_prob = logits.new_empty((N,), dtype=row_dtype(logits.dtype))
    outside = launch(
        "bernoulli_forward",
        logits,
        dtype_code(logits.dtype),
        dtype_code(x.dtype),
        logits.data_ptr(),
        x.data_ptr(),
        log_prob.data_ptr(),
        N,
        x.shape[0],
        D,
    )
    if outside:  # counted by the CPU kernel only
        raise ValueError("x holds values outside [0, 1] or NaN; Bernoulli targets must be probabilities in [0, 1]")
    return log_prob


def _forward_triton(logits, x):
    return triton_kernels().bernoulli.forward(
        logits.contiguous(), kernel_target(x, logits.dtype), row_dtype(logits.dtype)
    )


def _backward_native(grad, logits, x):
    logits, grad = logits.contiguous(), grad.contiguous()
    x = kernel_target(x, logits.dtype)
    N, D = logits.shape
    grad_logits = empty((N, D), logits.dtype, logits)
    launch(
        "bernoulli_backward",
        logits,
        dtype_code(logits.dtype),
        dtype_code(x.dtype),
        grad.data_ptr(),
        logits.data_ptr(),
        x.data_ptr(),
        grad_logits.data_ptr(),
        N,
        x.shape[0],
        D,
    )
    return grad_logits


def _backward_triton(grad, logits, x):
    return triton_kernels().bernoulli.backward(grad.contiguous(), logits.contiguous(), kernel_target(x, logits.dtype))


def _fake(logits, x, backend):
    return logits.new_empty(logits.shape[:1], dtype=row_dtype(logits.dtype))


def _fake_backward(grad, logits, x, backend):
    return logits.new_empty(logits.shape)


bernoulli_log_prob_backward = define(
    "bernoulli_log_prob_backward",
    "(Tensor grad, Tensor logits, Tensor x, str backend) -> Tensor",
    {"cpu": _backward_native, "cuda": _backward_native, "triton": _backward_triton},
    _fake_backward,
    check=lambda grad, logits, x: _check(logits, x, grad),
)


def _setup_context(ctx, inputs, output):
    logits, x, backend = inputs
    ctx.backend = backend
    ctx.save_for_backward(logits, x)


def _backward(ctx, grad):
    logits, x = ctx.saved_tensors
    grad_logits = (
        bernoulli_log_prob_backward.prechecked(grad, logits, x, ctx.backend) if ctx.needs_input_grad[0] else None
    )
    # d/dx = a; where rows of x repeat, their products are summed in float64 (they may cancel)
    dtype = grad.dtype if logits.shape[0] == x.shape[0] else torch.float64
    grad_x = fold_rows(logits.to(dtype) * grad.to(dtype)[:, None], x) if ctx.needs_input_grad[1] else None
    return grad_logits, grad_x, None


bernoulli_log_prob = define(
    "bernoulli_log_prob",
    "(Tensor logits, Tensor x, str backend) -> Tensor",
    {"cpu": _forward_native, "cuda": _forward_native, "triton": _forward_triton},
    _fake,
    _setup_context,
    _backward,
    check=_check,
)
