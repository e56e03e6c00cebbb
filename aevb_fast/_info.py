"""aevb_fast.info(): what a bug report needs (versions, the extension's build, and which backends
can serve CPU and CUDA tensors here); `aevb-fast info` prints it."""

import os
import platform
import sys

import torch

from ._version import __version__
from .ops import backends
from .ops._native import load_error, native


def _module_version(name: str) -> str:
    try:
        module = __import__(name)
    except Exception as error:
        return f"not importable ({type(error).__name__}: {error})"
    return getattr(module, "__version__", "unknown version")


def _extension_lines() -> list[str]:
    if native is None:
        return [f"extension   aevb_fast._C not built: {load_error}"]
    build = native.build
    lines = [
        f"extension   {native.__file__}",
        f"  compiler  {build['compiler']}, SIMD clone in use: {native.simd_level()}",
        f"  threads   torch's count, {torch.get_num_threads()}: the caller and {native.pool_workers()} pool worker(s) "
        "started so far",
    ]
    if build["cuda"]:
        major, minor = divmod(build["cuda"] // 10, 100)
        count = native.cuda.device_count()
        devices = f"{count} device(s)" if count else f"no usable device ({native.cuda.unavailable_reason()})"
        archs = ", ".join(f"sm_{a}" for a in build["cuda_architectures"].split(","))
        lines.append(f"  CUDA      kernels built against CUDA {major}.{minor} for {archs}; {devices}")
    else:
        lines.append("  CUDA      sources not built (no nvcc at build time, or AEVB_FAST_CUDA=0)")
    return lines


def _backend_lines() -> list[str]:
    lines = [f"{backends.ENV_VAR}={os.environ.get(backends.ENV_VAR, '(unset: auto)')}"]
    device_types = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device_type in device_types:
        lines.append(
            f"backends for {device_type} tensors (auto picks {backends.resolve('auto', torch.device(device_type))}):"
        )
        for name in backends.KERNEL_BACKENDS:
            reason = backends.unavailable_reason(name, device_type)
            lines.append(f"  {name:<7} {'usable' if reason is None else 'unusable: ' + reason}")
        lines.append(f"  {'torch':<7} usable (plain PyTorch reference)")
    return lines


def info() -> str:
    cuda = torch.version.cuda or "none"
    gpus = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())) or "none"
    lines = [
        f"aevb_fast   {__version__}",
        f"python      {sys.version.split()[0]} ({platform.system()} {platform.machine()})",
        f"torch       {torch.__version__} (CUDA {cuda}; GPUs: {gpus}; {torch.get_num_threads()} CPU threads)",
        f"triton      {_module_version('triton')}",
        *_extension_lines(),
        *_backend_lines(),
    ]
    return "\n".join(lines)
