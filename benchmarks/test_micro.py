"""Micro-benchmarks with pytest-benchmark: every op, size, provider and phase of cases.py.

    pytest benchmarks/ --benchmark-only [--bench-sizes tiny] [--bench-device cuda] [--bench-dtype bfloat16]

The runner (python -m benchmarks) measures the same cases interleaved and writes the report; this
is the same evidence in pytest-benchmark's format (--benchmark-json, --benchmark-compare, ...)."""

import pytest
import torch

from . import cases
from .timing import synchronize

PHASES = ["forward", "backward", "forward+backward"]


@pytest.fixture(scope="module")
def case_of(request):
    """Cases built once per (op, shape): the large ones take gigabytes and seconds to make."""
    config = request.config
    device, dtype = torch.device(config.getoption("--bench-device")), getattr(torch, config.getoption("--bench-dtype"))
    built = {}

    def get(op, size):
        shape = dict(cases.shapes(op, [config.getoption("--bench-sizes")])).get(size)
        if shape is None:
            pytest.skip(f"{op} has no {size} size in --bench-sizes")
        key = (op, size)
        if key not in built:
            built.clear()  # one case alive at a time
            built[key] = cases.BUILDERS[op](shape, dtype, device)
        return built[key]

    return get


PROVIDERS = ["aevb_fast", "eager", "torch.compile", "F.bce_with_logits", "pytorch example", "torch.distributions"]


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("size", ["tiny", *cases.SIZE_NAMES])
@pytest.mark.parametrize("op", cases.OPS)
def test_op(benchmark, case_of, op, size, provider, phase):
    case = case_of(op, size)
    names = [n for n in case.providers if n == provider or (provider == "aevb_fast" and n.startswith("aevb_fast"))]
    if not names:
        pytest.skip(f"no {provider} provider for {op} here")
    fn = case.providers[names[0]]
    benchmark.group = f"{case.label} {phase}"
    benchmark.extra_info.update(provider=names[0], shape=list(case.shape), dtype=str(case.dtype))

    def clear():
        for leaf in case.leaves:
            leaf.grad = None

    def forward():
        out = fn()
        synchronize(case.device)
        return out

    def backward(outputs):
        torch.autograd.backward(outputs, case.upstream)
        synchronize(case.device)

    def both():
        backward(fn())

    rounds = 3 if case.shape[0] * case.shape[1] > 1 << 22 else 20
    if phase == "forward":
        benchmark.pedantic(forward, setup=clear, rounds=rounds, warmup_rounds=1)
    elif phase == "backward":
        benchmark.pedantic(backward, setup=lambda: (clear(), ((forward(),), {}))[1], rounds=rounds, warmup_rounds=1)
    else:
        benchmark.pedantic(both, setup=clear, rounds=rounds, warmup_rounds=1)
