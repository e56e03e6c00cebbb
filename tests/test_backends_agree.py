"""The GPU kernels against the C++ CPU kernels: the Triton kernels (under the interpreter on CPU
tensors, compiled on CUDA tensors) and the CUDA C++ kernels. One seed gives the same eps on all
(the floats within the Philox contract's rtol 1e-6, atol 2e-6); values and gradients agree within
the dtype tolerances. Under the interpreter the Triton tiles shrink to 64 elements, so small shapes
take the paths large ones take on a GPU: several programs, several rows per program, loops over
column blocks. On a GPU machine run with TRITON_INTERPRET=0 to test the compiled Triton kernels."""

import pytest
import torch
from helpers import TOLERANCES, assert_close

import aevb_fast
from aevb_fast.ops import backends

GPU_DEVICES = ["cuda"] if torch.cuda.is_available() else []
# (device, backend) pairs to hold against the CPU kernels.
PAIRS = [
    (d, b)
    for d, b in [("cpu", "triton"), *((d, b) for d in GPU_DEVICES for b in ("triton", "cuda"))]
    if b in backends.usable(d)
]
pytestmark = pytest.mark.skipif(
    not PAIRS or "cpu" not in backends.usable("cpu"), reason="needs a GPU kernel backend and the C++ CPU kernels"
)
HALF_AND_FLOAT = [torch.float32, torch.float16, torch.bfloat16]


@pytest.fixture(params=PAIRS, ids=[f"{d}-{b}" for d, b in PAIRS])
def target(request, monkeypatch):
    """The (device, backend) under test."""
    if request.param == ("cpu", "triton"):
        from aevb_fast.kernels.triton import _launch

        monkeypatch.setattr(_launch, "INTERPRETER_TILE", 64)
    return request.param


def _rand(shape, dtype, seed, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g) * scale).to(dtype)


def _both(fn, *tensors, target):
    """fn(*tensors, backend) on the C++ CPU kernels and on the target's device and backend."""
    device, backend = target
    return fn(*tensors, "cpu"), fn(*(t.to(device) for t in tensors), backend)


@pytest.mark.parametrize("shape, n_samples", [((3, 5), 1), ((13, 20), 4), ((2, 300), 2), ((5, 1027), 3)])
def test_same_seed_same_eps_as_the_cpu_kernels(target, shape, n_samples):
    zeros = torch.zeros(shape)
    # A seed with both key words set and L * B * Z offsets per call.
    seed = 0x0123456789ABCDEF
    cpu, other = _both(
        lambda m, v, b: aevb_fast.reparameterize(m, v, n_samples, seed=seed, backend=b), zeros, zeros, target=target
    )
    torch.testing.assert_close(other.cpu(), cpu, rtol=1e-6, atol=2e-6)
    assert cpu.std() > 0.5  # noise, not zeros


@pytest.mark.parametrize("dtype", HALF_AND_FLOAT, ids=str)
@pytest.mark.parametrize("estimator", ["analytic", "mc"])
def test_reparameterize_agrees_with_the_cpu_kernels(target, dtype, estimator):
    mu, logvar = _rand((13, 20), dtype, 1), _rand((13, 20), dtype, 2, 0.5)
    grad_z, grad_kl = _rand((3, 13, 20), dtype, 3), _rand((3, 13) if estimator == "mc" else (13,), torch.float32, 4)

    def run(mu, logvar, grad_z, grad_kl, backend):
        mu, logvar = mu.requires_grad_(), logvar.requires_grad_()
        z, kl = aevb_fast.reparameterize_kl(mu, logvar, 3, estimator=estimator, seed=5, backend=backend)
        return z, kl, *torch.autograd.grad((z, kl), (mu, logvar), (grad_z, grad_kl))

    for name, cpu, other in zip(
        ("z", "kl", "grad mu", "grad logvar"), *_both(run, mu, logvar, grad_z, grad_kl, target=target)
    ):
        assert other.dtype == cpu.dtype
        torch.testing.assert_close(other.cpu().double(), cpu.double(), **TOLERANCES[cpu.dtype], msg=name)


@pytest.mark.parametrize("dtype", HALF_AND_FLOAT, ids=str)
@pytest.mark.parametrize("target_dtype", [None, torch.uint8, torch.bool], ids=str)
@pytest.mark.parametrize("width", [300, 301])
def test_likelihoods_agree_with_the_cpu_kernels(target, dtype, target_dtype, width):
    values = [_rand((2, 3, width), dtype, seed, 2.0) for seed in (1, 2, 3)]
    x = torch.rand(3, width, generator=torch.Generator().manual_seed(4))
    x = x.to(dtype) if target_dtype is None else (x > 0.5).to(target_dtype)
    weights = _rand((2, 3), torch.float32, 5)

    def run(a, b, c, x, backend):
        a, b, c = a.requires_grad_(), b.requires_grad_(), c.requires_grad_()
        bernoulli = aevb_fast.bernoulli_log_prob(a, x, backend=backend)
        gaussian = aevb_fast.gaussian_log_prob(x, b, c, backend=backend)
        w = weights.to(a.device)
        return bernoulli, gaussian, *torch.autograd.grad((bernoulli * w).sum() + (gaussian * w).sum(), (a, b, c))

    for cpu, other in zip(*_both(run, *values, x, target=target)):
        assert other.dtype == cpu.dtype
        assert_close(other, cpu)
