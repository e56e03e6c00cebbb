"""The compiled extension aevb_fast._C, if this install has it, and how tensors are handed to it."""

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
