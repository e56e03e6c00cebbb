"""Triton kernel of out[n, d] = grad[n, d] * scale[n], the backward of the per-row likelihoods,
whose gradients are made in their forward pass.

Shapes: grad [N, D] contiguous; scale [N] of the row dtype (float32; float64 for float64 grad),
which is also the math dtype; out [N, D] in grad's dtype.
"""

import torch
import triton
import triton.language as tl

from ._launch import on_device, row_blocks
from ._tiles import row_block, tile


@triton.jit
def scale_rows_kernel(grad_ptr, scale_ptr, out_ptr, N, D, BLOCK_ROWS: tl.constexpr, BLOCK_COLS: tl.constexpr):
    rows, row_ok = row_block(tl.program_id(0), N, BLOCK_ROWS)
    scale = tl.load(scale_ptr + rows, mask=row_ok, other=0)[:, None]
    for start in range(0, D, BLOCK_COLS):
        _, mask, at = tile(rows, row_ok, start, D, BLOCK_COLS)
        g = tl.load(grad_ptr + at, mask=mask, other=0).to(scale_ptr.dtype.element_ty)
        tl.store(out_ptr + at, (g * scale).to(out_ptr.dtype.element_ty), mask=mask)


def scale_rows(grad: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """grad [N, D] * scale [N, 1] for contiguous grad and scale."""
    out = torch.empty_like(grad)
    N, D = grad.shape
    if N == 0:
        return out
    kernel = scale_rows_kernel
    blocks = row_blocks(kernel, N, D)
    with on_device(grad):
        kernel[(triton.cdiv(N, blocks["BLOCK_ROWS"]),)](grad, scale, out, N, D, **blocks)
    return out
