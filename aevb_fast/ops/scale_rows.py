"""aevb_fast::scale_rows: out[n, d] = grad[n, d] * scale[n], the backward of the per-row
likelihood ops, whose gradients are made in the forward pass.

Shapes: grad [N, D] (float32, float64, float16 or bfloat16); scale [N] of the row dtype (float64
for float64 grad, else float32); out [N, D] in grad's dtype, multiplied in float32 or float64.
"""

import torch

from ._library import define, require, row_dtype, triton_kernels
from ._native import dtype_code, empty, native, threads


def _check(grad, scale):
    require(grad.dim() == 2 and scale.shape == grad.shape[:1] and scale.dtype == row_dtype(grad.dtype),
            lambda: f"aevb_fast::scale_rows: grad must be [N, D] and scale [N] of its row dtype, got "
            f"{tuple(grad.shape)} {grad.dtype} and {tuple(scale.shape)} {scale.dtype}")


def _scale_rows_cpu(grad, scale):
    _check(grad, scale)
    grad, scale = grad.contiguous(), scale.contiguous()
    out = empty(grad.shape, grad.dtype)
    native.scale_rows(dtype_code(grad.dtype), grad.data_ptr(), scale.data_ptr(), out.data_ptr(), *grad.shape, threads())
    return out


def _scale_rows_triton(grad, scale):
    _check(grad, scale)
    return triton_kernels().scale_rows.scale_rows(grad.contiguous(), scale.contiguous())


def _fake(grad, scale, backend):
    return grad.new_empty(grad.shape)


scale_rows = define("scale_rows", "(Tensor grad, Tensor scale, str backend) -> Tensor",
                    {"cpu": _scale_rows_cpu, "triton": _scale_rows_triton}, _fake)
