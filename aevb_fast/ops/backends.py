"""Which implementation serves a call: backend= or AEVB_FAST_BACKEND = auto|triton|cuda|cpu|torch.

auto takes the first kernel backend usable for the tensors' device (CUDA: triton, then cuda; CPU:
the C++ kernels) and falls back quietly to "torch" (the plain PyTorch reference) where none is; an
explicit request that cannot be served raises RuntimeError saying why. Triton's interpreter
(TRITON_INTERPRET=1) lets backend="triton" serve CPU tensors, for testing; auto never picks it.
"""

import os

import torch

from ._native import load_error, native

ENV_VAR = "AEVB_FAST_BACKEND"
BACKENDS = ("auto", "triton", "cuda", "cpu", "torch")
KERNEL_BACKENDS = ("triton", "cuda", "cpu")
AUTO = {"cuda": ("triton", "cuda"), "cpu": ("cpu",)}


def requested(backend: str | None) -> str:
    """The backend name asked for, from the argument or else the environment; checked."""
    name, source = (backend, "backend") if backend is not None else (os.environ.get(ENV_VAR, "auto"), ENV_VAR)
    if name not in BACKENDS:
        raise ValueError(f"{source}={name!r} is not a backend; expected one of {', '.join(BACKENDS)}")
    return name


def unavailable_reason(backend: str, device_type: str) -> str | None:
    """Why a kernel backend cannot serve tensors of this device type here, or None if it can."""
    if backend == "cpu":
        if device_type != "cpu":
            return f"the cpu backend runs on CPU tensors, not {device_type} tensors"
        if native is None:
            return f"the compiled extension aevb_fast._C is not built ({load_error})"
        return None
    if backend == "triton":
        return _triton_unavailable_reason(device_type)
    if backend == "cuda":
        return _cuda_unavailable_reason(device_type)
    raise ValueError(f"{backend!r} is not a kernel backend; expected one of {', '.join(KERNEL_BACKENDS)}")


def _cuda_unavailable_reason(device_type: str) -> str | None:
    if device_type != "cuda":
        return f"the cuda backend runs on CUDA tensors, not {device_type} tensors"
    if native is None:
        return f"the compiled extension aevb_fast._C is not built ({load_error})"
    if not native.build["cuda"]:
        return (
            "aevb_fast._C was built without its CUDA kernels (nvcc was not found at build time): reinstall "
            "with nvcc on the PATH, or AEVB_FAST_CUDA=1 to make the build require it"
        )
    if not native.cuda.device_count():
        return f"the CUDA kernels see no usable device ({native.cuda.unavailable_reason()})"
    return None


def _triton_unavailable_reason(device_type: str) -> str | None:
    if device_type not in ("cuda", "cpu"):
        return (
            "the triton backend runs on CUDA tensors (and CPU tensors under TRITON_INTERPRET=1), "
            f"not {device_type} tensors"
        )
    from ..kernels import triton as kernels  # imports triton, which reads TRITON_INTERPRET, on first use

    if kernels.load_error is not None:
        return f"the Triton kernels cannot load ({kernels.load_error})"
    if device_type == "cpu" and not kernels.interpreted:
        return (
            "the Triton kernels run on CPU tensors only under Triton's interpreter: set TRITON_INTERPRET=1 "
            "before aevb_fast first uses them"
        )
    return None


_USABLE: dict[str, tuple[str, ...]] = {}


def usable(device_type: str) -> tuple[str, ...]:
    """Kernel backends that can serve this device type, those auto may pick first in its order;
    fixed for the life of the process, so it is worked out once per device type, and torch.compile
    takes it as a constant instead of tracing into the extension's device query (a graph break)."""
    if device_type not in _USABLE:
        preferred = AUTO.get(device_type, ())
        names = (*preferred, *(n for n in KERNEL_BACKENDS if n not in preferred))
        _USABLE[device_type] = tuple(n for n in names if unavailable_reason(n, device_type) is None)
    return _USABLE[device_type]


# What torch.compiler.assume_constant_result(usable) does, without the import of torch._dynamo that
# it makes to do so: that import cost every user 1 s and 140 MB at `import aevb_fast`, compiling or
# not (tests/test_compile.py checks that the decorator still only sets this marker).
usable._dynamo_marked_constant = True


def resolve(backend: str | None, device: torch.device) -> str:
    """The backend that serves a call on `device`: a kernel backend name or "torch"."""
    if torch.compiler.is_compiling():
        return _resolve(backend, device.type)
    # Worked out once per (name, device type) that can serve: on one-element inputs the lookup
    # cost as much as the kernel. The environment is read on every call, as a user may change it.
    key = (backend if backend is not None else os.environ.get(ENV_VAR, "auto"), device.type)
    name = _RESOLVED.get(key)
    if name is None:
        name = _RESOLVED[key] = _resolve(backend, device.type)
    return name


_RESOLVED: dict[tuple[str, str], str] = {}


def _resolve(backend: str | None, device_type: str) -> str:
    name = requested(backend)
    if name == "torch":
        return name
    if name == "auto":
        for candidate in usable(device_type):
            if candidate in AUTO.get(device_type, ()):
                return candidate
        return "torch"
    if name not in usable(device_type):
        raise RuntimeError(
            f"backend={name!r} cannot serve {device_type} tensors here: {unavailable_reason(name, device_type)}"
        )
    return name
