"""Targets (x) as the likelihood kernels read them."""

import torch

_HALF = (torch.float16, torch.bfloat16)


def kernel_target(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """x as a contiguous tensor of a dtype the kernels read beside values of `dtype`: that dtype,
    uint8 or bool as they are, float32 beside half precision; any other float is cast."""
    if not (x.dtype in (dtype, torch.uint8, torch.bool) or (dtype in _HALF and x.dtype == torch.float32)):
        x = x.to(torch.float32 if dtype in _HALF else dtype)
    return x.contiguous()


def fold_rows(grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The gradient of x [Nx, D] from one of its repeated uses [N, D] (row n used x[n % Nx]), summed
    in float64: the copies' terms may cancel (float32 sums of 17 copies were off by 2e-5)."""
    if grad.shape[0] != x.shape[0]:
        grad = grad.view(-1, *x.shape).sum(0, dtype=torch.float64)
    return grad.to(x.dtype)
