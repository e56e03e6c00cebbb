"""The compiled extension aevb_fast._C, if this install has it, and how tensors are handed to it:
contiguous tensors' data_ptr(), dtype codes, and either torch's thread count (CPU kernels) or the
tensors' CUDA device and torch's current stream on it (CUDA kernels)."""

import math

import torch

try:
    from .. import _C as native

    load_error = None
except ImportError as error:  # a source checkout that was never built
    native = None
    load_error = f"{type(error).__name__}: {error}"

# The extension's dtype codes (csrc/common/dtype.h), by torch dtype.
DTYPE_CODES = {} if native is None else {getattr(torch, name): code for name, code in native.dtype_codes.items()}


def dtype_code(dtype: torch.dtype) -> int:
    return DTYPE_CODES[dtype]


def launch(kernel: str, like: torch.Tensor, *args):
    """Runs the native kernel `kernel` for tensors on like's device: the CPU kernel with torch's thread
    count (so that its worker threads and torch's never oversubscribe the cores), or the CUDA kernel on
    like's device and torch's current stream there (so that it is ordered with torch's work and
    captured by CUDA graphs)."""
    if like.is_cuda:
        return getattr(native.cuda, kernel)(
            *args, like.device.index, torch.cuda.current_stream(like.device).cuda_stream
        )
    return getattr(native, kernel)(*args, torch.get_num_threads())


# From this size on, glibc's malloc hands out freshly mapped memory whose every 4 KiB page faults
# on first touch (its mmap threshold tops out at 32 MiB); below it, freed blocks are reused.
HUGE_PAGE_MIN_BYTES = 32 << 20


def empty(shape: tuple[int, ...], dtype: torch.dtype, like: torch.Tensor) -> torch.Tensor:
    """An uninitialised contiguous tensor on like's device for a kernel to fill. On the CPU, from
    HUGE_PAGE_MIN_BYTES on, a buffer on transparent huge pages, reused from an earlier freed output
    of the same size where one is cached (csrc/cpu/huge_pages.h)."""
    if like.is_cpu and math.prod(shape) * dtype.itemsize >= HUGE_PAGE_MIN_BYTES:
        return torch.from_dlpack(native.empty_on_huge_pages(DTYPE_CODES[dtype], list(shape)))
    return like.new_empty(shape, dtype=dtype)


def empty_cache() -> None:
    """Hands the freed CPU output buffers that aevb_fast keeps for reuse back to the system.

    The fused CPU kernels' outputs of 32 MiB and more come from a cache of freed ones (up to
    AEVB_FAST_CPU_CACHE_MB, default 1024 MiB; 0 turns it off), because faulting in fresh memory cost
    as much as the kernels themselves. Like torch.cuda.empty_cache, this only releases memory no
    tensor uses."""
    if native is not None:
        native.empty_cache()
