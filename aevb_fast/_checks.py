"""The library's argument checks, shared by aevb_fast.functional and aevb_fast.modules (whose
constructors check what the functions would, so that a bad setting fails where it is made)."""

import math
from collections.abc import Sequence

import torch

from .ops import backends


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


def check_iwae(iwae: bool, estimator: str, beta: float) -> None:
    if iwae and estimator != "mc":
        raise ValueError(f"iwae=True needs estimator='mc' (per-sample log q(z|x) - log p(z)), got estimator={estimator!r}")
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
