"""The argument checks the training application shares: choices, counts and the failures of file
readers."""

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


@contextmanager
def reading(file, kind: str):
    """Whatever a reader raises on a damaged file (NumPy, scipy, zipfile and Pillow raise many
    types) as one ValueError naming the file."""
    try:
        yield
    except Exception as error:
        raise ValueError(f"{file} is not a readable {kind} ({type(error).__name__}: {error})") from None
