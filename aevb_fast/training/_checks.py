"""The argument checks the training application shares: choices, counts and the failures of file
readers."""

import math
from collections.abc import Sequence
from contextlib import contextmanager


def check_choice(name: str, value, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not supported; expected one of {', '.join(map(repr, choices))}")


def is_int(value) -> bool:
    """An int, and not a bool (True is an int to Python, never a count here)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_count(value) -> bool:
    """A positive int."""
    return is_int(value) and value > 0


def check_count(name: str, value) -> None:
    if not is_count(value):
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def check_bound_options(estimator: str, iwae: bool, gradient: str, beta, free_bits) -> None:
    """The training objective's options together, as aevb_fast.elbo_loss takes them (VAE.forward's
    fused head computes the objective itself, so it checks them here)."""
    from .. import ESTIMATORS, GRADIENTS

    check_choice("estimator", estimator, ESTIMATORS)
    check_choice("gradient", gradient, GRADIENTS)
    for name, value in (("beta", beta), ("free_bits", free_bits)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    if iwae not in (True, False):
        raise ValueError(f"iwae must be True or False, got {iwae!r}")
    needs = [
        (iwae and estimator != "mc", "iwae needs estimator='mc'"),
        (iwae and beta != 1, "iwae is the bound for beta = 1"),
        (gradient != "standard" and estimator != "mc", f"gradient={gradient!r} needs estimator='mc'"),
        (gradient == "dreg" and not iwae, "gradient='dreg' needs iwae"),
        (free_bits and estimator != "analytic", "free_bits needs estimator='analytic'"),
    ]
    for violated, message in needs:
        if violated:
            raise ValueError(message)


@contextmanager
def reading(file, kind: str):
    """Whatever a reader raises on a damaged file (NumPy, scipy, zipfile and Pillow raise many
    types) as one ValueError naming the file."""
    try:
        yield
    except Exception as error:
        raise ValueError(f"{file} is not a readable {kind} ({type(error).__name__}: {error})") from None
