"""The likelihood ops, defined from one table each: aevb_fast::<name>_log_prob and its backward op
aevb_fast::<name>_log_prob_backward for a per-row log-likelihood log p(x|values) summed over D, and
its fused head aevb_fast::linear_<name>_log_prob (linear_likelihood.py).

A likelihood names its arguments in schema order, the targets "x" among them (the CPU and CUDA
kernels <name>_forward and <name>_backward of csrc/common/kernel_list.h, and the Triton launchers
forward and backward of aevb_fast/kernels/triton/<name>.py, take them in that order):

    <name>_log_prob(*args, str backend) -> log_prob [N]
    <name>_log_prob_backward(Tensor grad, *args, str backend) -> the values' gradients, one per value

Shapes: values [N, D] of one floating dtype; x [Nx, D] with N a multiple of Nx (row n reads
x[n % Nx]), floating, uint8 or bool; log_prob and grad [N] float32 (float64 for float64 values);
the values' gradients [N, D] in their dtype. The forward makes the per-row values only; the backward
recomputes the gradient from the inputs, scaled by each row's upstream gradient (why: bernoulli.py).
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ._library import FusedOp, define, require, require_one_device, row_dtype, triton_kernels
from ._native import dtype_code, empty, launch
from ._targets import kernel_target
from .linear_likelihood import define_head

# Unbound methods, mapped over the arguments: cheaper per call than a comprehension's frame.
_contiguous, _data_ptr = torch.Tensor.contiguous, torch.Tensor.data_ptr


@dataclass(frozen=True)
class LikelihoodOp:
    """One likelihood's op table.

    name         the kernels' stem: <name>_forward / <name>_backward, kernels.triton.<name>
    args         the arguments in schema order: the values' names and "x"
    target_grad  (grad [N], values, the values' gradients, x) -> the gradient of x [Nx, D], for
                 targets that take one
    on_forward   (the native forward kernel's return value) -> None: raises on what the kernel
                 reports (None: nothing to report)
    sigmoid_head whether its fused head offers a sigmoid on the first value (a mean of data in
                 [0, 1], as the paper's Frey Face decoder's)
    components   whether each value holds K components per element, [N, D, K] (a mixture: the
                 kernels take K after D, and there is no fused head)
    """

    name: str
    args: tuple[str, ...]
    target_grad: Callable
    on_forward: Callable | None = None
    sigmoid_head: bool = False
    components: bool = False

    @property
    def values(self) -> tuple[str, ...]:
        return tuple(a for a in self.args if a != "x")


@dataclass(frozen=True)
class LikelihoodOps:
    """The ops of one likelihood: its log-likelihood and fused head (None for a mixture), each with
    its backward op."""

    log_prob: FusedOp
    log_prob_backward: FusedOp
    linear_log_prob: FusedOp | None
    linear_log_prob_backward: FusedOp | None


def define_likelihood(spec: LikelihoodOp) -> LikelihoodOps:
    """Defines <name>_log_prob, linear_<name>_log_prob and their backward ops from the table."""
    op = f"{spec.name}_log_prob"
    forward_kernel, backward_kernel = f"{spec.name}_forward", f"{spec.name}_backward"
    # Positions in the arguments, worked out once: on one-element inputs every microsecond of
    # argument handling shows (tests/test_benchmarks.py's per-call table).
    value_at = tuple(i for i, a in enumerate(spec.args) if a != "x")
    x_at, v0, n_values = spec.args.index("x"), value_at[0], len(value_at)
    others = value_at[1:]
    value_dims, value_shape = (3, "[N, D, K]") if spec.components else (2, "[N, D]")

    def check(*args, grad=None):
        first, x = args[v0], args[x_at]
        require(
            first.dim() == value_dims
            and first.is_floating_point()
            and (not others or all(args[i].shape == first.shape and args[i].dtype == first.dtype for i in others)),
            lambda: (
                f"aevb_fast::{op}: {', '.join(spec.values)} must be {value_shape} of one floating dtype, got "
                + ", ".join(f"{tuple(args[i].shape)} {args[i].dtype}" for i in value_at)
            ),
        )
        require(
            x.dim() == 2
            and x.shape[1] == first.shape[1]
            and (x.shape[0] > 0 or first.shape[0] == 0)
            and first.shape[0] % max(x.shape[0], 1) == 0,
            lambda: (
                f"aevb_fast::{op}: x must be [Nx, D] with N a multiple of Nx, got {tuple(x.shape)} beside "
                f"{tuple(first.shape)}"
            ),
        )
        require(
            x.is_floating_point() or x.dtype in (torch.uint8, torch.bool),
            lambda: f"aevb_fast::{op}: x must be floating, uint8 or bool, got {x.dtype}",
        )
        require(
            grad is None or (grad.shape == first.shape[:1] and grad.dtype == row_dtype(first.dtype)),
            lambda: (
                f"aevb_fast::{op}_backward: grad must be [N] {row_dtype(first.dtype)} beside "
                f"{tuple(first.shape)}, got {tuple(grad.shape)} {grad.dtype}"
            ),
        )
        require_one_device(op if grad is None else f"{op}_backward", **dict(zip(spec.args, args)), grad=grad)

    def kernel_args(args) -> list:
        """The arguments as the kernels take them: values contiguous, x in a dtype they read. Held in
        a list until the kernel has run: a contiguous copy made inside the call would be freed first."""
        out = list(map(_contiguous, args))
        out[x_at] = kernel_target(args[x_at], args[v0].dtype)
        return out

    def forward_native(*args):
        args = kernel_args(args)
        first, x = args[v0], args[x_at]
        N, D, *K = first.shape
        log_prob = first.new_empty((N,), dtype=row_dtype(first.dtype))
        reported = launch(
            forward_kernel,
            first,
            dtype_code(first.dtype),
            dtype_code(x.dtype),
            *map(_data_ptr, args),
            log_prob.data_ptr(),
            N,
            x.shape[0],
            D,
            *K,
        )
        if spec.on_forward is not None:
            spec.on_forward(reported)
        return log_prob

    def forward_triton(*args):
        return getattr(triton_kernels(), spec.name).forward(*kernel_args(args), row_dtype(args[v0].dtype))

    def backward_native(grad, *args):
        grad, args = grad.contiguous(), kernel_args(args)
        first, x = args[v0], args[x_at]
        N, D, *K = first.shape
        grads = [empty(first.shape, first.dtype, first) for _ in value_at]
        launch(
            backward_kernel,
            first,
            dtype_code(first.dtype),
            dtype_code(x.dtype),
            grad.data_ptr(),
            *map(_data_ptr, args),
            *map(_data_ptr, grads),
            N,
            x.shape[0],
            D,
            *K,
        )
        return grads[0] if n_values == 1 else tuple(grads)

    def backward_triton(grad, *args):
        return getattr(triton_kernels(), spec.name).backward(grad.contiguous(), *kernel_args(args))

    def fake(*args):
        first = args[v0]
        return first.new_empty(first.shape[:1], dtype=row_dtype(first.dtype))

    def fake_backward(grad, *args):
        grads = [args[v0].new_empty(args[v0].shape) for _ in value_at]
        return grads[0] if n_values == 1 else tuple(grads)

    tensors = ", ".join(f"Tensor {a}" for a in spec.args)
    outputs = "Tensor" if n_values == 1 else "(" + ", ".join(["Tensor"] * n_values) + ")"
    backward_op = define(
        f"{op}_backward",
        f"(Tensor grad, {tensors}, str backend) -> {outputs}",
        {"cpu": backward_native, "cuda": backward_native, "triton": backward_triton},
        fake_backward,
        check=lambda grad, *args: check(*args, grad=grad),
    )

    def setup_context(ctx, inputs, output):
        ctx.backend = inputs[-1]
        ctx.save_for_backward(*inputs[:-1])

    def backward(ctx, grad):
        args, needs = ctx.saved_tensors, ctx.needs_input_grad
        grads = backward_op.prechecked(grad, *args, ctx.backend)
        grads = (grads,) if n_values == 1 else grads
        out = [None] * (len(args) + 1)
        for i, g in zip(value_at, grads):
            out[i] = g if needs[i] else None
        if needs[x_at]:
            out[x_at] = spec.target_grad(grad, [args[i] for i in value_at], grads, args[x_at])
        return tuple(out)

    forward_op = define(
        op,
        f"({tensors}, str backend) -> Tensor",
        {"cpu": forward_native, "cuda": forward_native, "triton": forward_triton},
        fake,
        setup_context,
        backward,
        check=check,
    )
    if spec.components:
        return LikelihoodOps(forward_op, backward_op, None, None)
    head = define_head(spec.name, spec.values, x_at, spec.sigmoid_head, forward_op, backward_op)
    return LikelihoodOps(forward_op, backward_op, *head)
