"""The library's argument checks, shared by aevb_fast.functional, aevb_fast.likelihoods and
aevb_fast.modules (whose constructors check what the functions would, so that a bad setting fails
where it is made), and the small argument handling they share (views, the math dtype)."""

import math
from collections.abc import Sequence

import torch

from .ops import backends

HALF = (torch.float16, torch.bfloat16)
WIDE = (torch.float32, torch.float64)
# The dtypes the kernels read: any other (float8, ...) is refused before it reaches one.
VALUE_DTYPES = (torch.float32, torch.float64, *HALF)
TARGET_DTYPES = (*VALUE_DTYPES, torch.uint8, torch.bool)


def check_choice(name: str, value, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not supported; expected one of {', '.join(map(repr, choices))}")


def check_n_samples(n_samples, allow_none: bool = True) -> None:
    if n_samples is None and allow_none:
        return
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive int{' or None' if allow_none else ''}, got {n_samples!r}")


def check_beta(beta) -> None:
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not math.isfinite(beta) or beta < 0:
        raise ValueError(f"beta must be a finite number >= 0, got {beta!r}")


# The gradient estimators of the bounds with per-sample log q(z|x) (estimator "mc"): the plain
# reparameterization gradient; "sticking the landing" (Roeder et al. 2017), log q(z|x) at stopped
# encoder outputs, whose gradient goes through z alone; and doubly reparameterized (Tucker et al.
# 2018) for the importance-weighted bound, that and the squared normalized weights.
GRADIENTS = ("standard", "stl", "dreg")


def check_gradient(gradient: str, estimator: str, iwae: bool) -> None:
    check_choice("gradient", gradient, GRADIENTS)
    if gradient != "standard" and estimator != "mc":
        raise ValueError(
            f"gradient={gradient!r} changes the gradient of the per-sample log q(z|x): it needs "
            f"estimator='mc', got estimator={estimator!r}"
        )
    if gradient == "dreg" and not iwae:
        raise ValueError(
            "gradient='dreg' is an estimator of the importance-weighted bound's gradient: it needs iwae=True"
        )


def check_free_bits(free_bits, estimator: str) -> None:
    if isinstance(free_bits, bool) or not isinstance(free_bits, (int, float)) or not 0 <= free_bits < math.inf:
        raise ValueError(f"free_bits must be a number of nats >= 0, got {free_bits!r}")
    if free_bits and estimator != "analytic":
        raise ValueError(
            f"free_bits needs estimator='analytic' (the KL of each latent unit), got estimator={estimator!r}"
        )


def check_iwae(iwae: bool, estimator: str, beta: float) -> None:
    if iwae and estimator != "mc":
        raise ValueError(
            f"iwae=True needs estimator='mc' (per-sample log q(z|x) - log p(z)), got estimator={estimator!r}"
        )
    if iwae and beta != 1:
        raise ValueError(f"iwae=True is the bound for beta=1, got beta={beta!r}")


def check_backend(backend, device: torch.device | None = None) -> None:
    """ValueError unless backend names a backend, and (given a device) one that can serve it here."""
    if backend is None:
        return
    backends.requested(backend)
    if device is not None:
        try:
            backends.resolve(backend, device)
        except RuntimeError as error:
            raise ValueError(str(error)) from None


def check_chunk_rows(chunk_rows) -> None:
    if chunk_rows is not None and (isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1):
        raise ValueError(f"chunk_rows must be a positive int or None, got {chunk_rows!r}")


def describe(t: torch.Tensor) -> str:
    return f"{list(t.shape)} {t.dtype} on {t.device}"


def check_values(name: str, t) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in VALUE_DTYPES:
        raise TypeError(f"{name} must be a floating tensor (float32, float64, float16 or bfloat16), got {describe(t)}")


def check_target(name: str, t) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in TARGET_DTYPES:
        raise TypeError(
            f"{name} must be a floating, uint8 or bool tensor, got {describe(t)}; the floating dtypes "
            "are float32, float64, float16 and bfloat16"
        )


def check_devices(**tensors: torch.Tensor) -> None:
    first, *rest = tensors.values()
    if any(t.device != first.device for t in rest):
        raise ValueError(
            "expected tensors on one device, got " + ", ".join(f"{n} on {t.device}" for n, t in tensors.items())
        )


def flat(t: torch.Tensor, shape) -> torch.Tensor:
    """t viewed as `shape` (one -1 allowed), or t itself where it has that shape already: a view of a
    tensor that takes gradients is one more autograd node, which costs microseconds forward and back."""
    if t.dim() == len(shape) and all(s == -1 or s == d for s, d in zip(shape, t.shape)):
        return t
    return t.view(shape) if -1 not in shape else t.reshape(shape)


def math_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in HALF else dtype
