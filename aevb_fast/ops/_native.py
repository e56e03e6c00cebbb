"""The compiled extension aevb_fast._C, if this install has it, and how tensors are handed to it."""

import math

import torch

try:
    from .. import _C as native

    load_error = None
except ImportError as error:  # a source checkout that was never built
    native = None
    load_error = f"{type(error).__name__}: {error}"

# Codes of csrc/cpu/dtype.h.
DTYPE_CODES = {
    torch.float32: 0,
    torch.float64: 1,
    torch.float16: 2,
    torch.bfloat16: 3,
    torch.uint8: 4,
    torch.bool: 5,
}


def dtype_code(dtype: torch.dtype) -> int:
    return DTYPE_CODES[dtype]


def threads() -> int:
    """The CPU kernels use torch's thread count, so the two never oversubscribe the cores."""
    return torch.get_num_threads()


# From this size on, glibc's malloc hands out freshly mapped memory whose every 4 KiB page faults
# on first touch (its mmap threshold tops out at 32 MiB); below it, freed blocks are reused.
HUGE_PAGE_MIN_BYTES = 32 << 20


def empty(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised contiguous CPU tensor for a kernel to fill: from HUGE_PAGE_MIN_BYTES on, on
    transparent huge pages (csrc/cpu/huge_pages.h), which fault several times faster."""
    if math.prod(shape) * dtype.itemsize >= HUGE_PAGE_MIN_BYTES:
        return torch.from_dlpack(native.empty_on_huge_pages(DTYPE_CODES[dtype], list(shape)))
    return torch.empty(shape, dtype=dtype)
