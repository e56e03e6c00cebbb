"""The aevb_fast operator library: one definition per fused op, routed by its backend argument.

Ops are defined with torch.library.Library (define + impl), which costs several times less per
call than torch.library.custom_op; fake and autograd rules are added with
torch.library.register_fake / register_autograd in each op's module.
"""

from collections.abc import Callable

import torch

from .backends import unavailable_reason, usable

lib = torch.library.Library("aevb_fast", "DEF")


def row_dtype(dtype: torch.dtype) -> torch.dtype:
    """Dtype of per-row outputs (KL, log-likelihoods): float64 for float64 values, else float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def require(condition: bool, message: str) -> None:
    """Argument checks of the ops themselves: a kernel handed mismatched buffers would read out of
    bounds, so direct callers of torch.ops.aevb_fast get a ValueError instead."""
    if not condition:
        raise ValueError(message)


def triton_kernels():
    """aevb_fast.kernels.triton, imported on first use: importing triton takes half a second and
    reads TRITON_INTERPRET, which a user may set after importing aevb_fast."""
    from ..kernels import triton

    return triton


def define(name: str, schema: str, launchers: dict[str, Callable]) -> torch._ops.OpOverload:
    """Defines aevb_fast::<name><schema>, whose last argument is the backend, and routes calls on
    CPU and CUDA tensors to launchers[backend] (called without that argument)."""
    lib.define(name + schema)

    def route(*args):
        *inputs, backend = args
        device = next(a.device for a in inputs if isinstance(a, torch.Tensor))
        launcher = launchers.get(backend)
        if launcher is None or backend not in usable(device.type):
            reason = unavailable_reason(backend, device.type) if launcher is not None else (
                f"no {backend!r} kernel; kernels: {', '.join(sorted(launchers))}")
            raise RuntimeError(f"aevb_fast::{name} cannot run with backend={backend!r} on {device.type} tensors: {reason}")
        return launcher(*inputs)

    for dispatch_key in ("CPU", "CUDA"):
        lib.impl(name, route, dispatch_key)
    return getattr(torch.ops.aevb_fast, name).default
