"""The tests' parametrization: the dtype fixture and the backend pairs (tests/helpers.py holds the
shared helpers).

A test that takes `backend` runs on CPU tensors with every backend usable there; one that also
takes `device` runs on every device present (CPU, and CUDA where there is a GPU) with every backend
usable on it. Under TRITON_INTERPRET=1 (the default here) the Triton kernels are among the CPU
backends; on a GPU machine set TRITON_INTERPRET=0 to test them compiled, on CUDA tensors."""

import os

# Set before anything imports triton: the interpreter runs Triton kernels on CPU tensors.
os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest
from helpers import CPU_BACKENDS, DEVICE_BACKENDS, DTYPES


def pytest_generate_tests(metafunc):
    explicit = {
        name.strip()
        for mark in metafunc.definition.iter_markers("parametrize")
        for name in (mark.args[0].split(",") if isinstance(mark.args[0], str) else mark.args[0])
    }
    if "backend" not in metafunc.fixturenames or "backend" in explicit:
        return
    if "device" in metafunc.fixturenames:
        metafunc.parametrize("device, backend", DEVICE_BACKENDS, ids=[f"{d}-{b}" for d, b in DEVICE_BACKENDS])
    else:
        metafunc.parametrize("backend", CPU_BACKENDS)


@pytest.fixture(params=DTYPES, ids=lambda d: str(d).removeprefix("torch."))
def dtype(request):
    return request.param
