"""Every op on every device and backend against the reference: values and gradients per dtype,
float64 gradcheck, odd and empty shapes, leading dims, non-contiguous inputs, shared targets,
non-finite values, and torch.library.opcheck of each registered op. The likelihoods' generic tests,
run for every likelihood of the registry, are tests/test_likelihoods.py."""

import os
import subprocess
import sys

import pytest
import torch
from helpers import CPU_BACKENDS, KERNEL_BACKENDS, assert_close, check_against_reference

import aevb_fast
from aevb_fast import reference as R
from aevb_fast.ops._native import DTYPE_CODES, native

# [batch..., features]: one element, odd sizes, rows longer than a kernel chunk (1024), leading
# dims, and an empty batch.
SHAPES = [(1, 1), (3, 5), (2, 1500), (2, 3, 4), (0, 6)]
ON_KERNELS = pytest.mark.parametrize("device, backend", KERNEL_BACKENDS, ids=[f"{d}-{b}" for d, b in KERNEL_BACKENDS])


def _rand(shape, dtype, seed, scale=1.0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=torch.float64) * scale).to(device, dtype)


def _eps(shape, n_samples, seed, backend, dtype=torch.float32, device="cpu"):
    """The noise reparameterize draws for (seed, shape): z of mu = 0, logvar = 0, in the math dtype."""
    zeros = torch.zeros(shape, dtype=torch.float64 if dtype == torch.float64 else torch.float32, device=device)
    return aevb_fast.reparameterize(zeros, zeros, n_samples, seed=seed, backend=backend).cpu().double()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("estimator", ["analytic", "mc"])
@pytest.mark.parametrize("n_samples", [None, 3])
def test_reparameterize_kl(device, backend, dtype, shape, estimator, n_samples):
    eps = _eps(shape, n_samples, 9, backend, dtype, device)

    def fused(mu, logvar):
        return aevb_fast.reparameterize_kl(mu, logvar, n_samples, estimator=estimator, seed=9, backend=backend)

    def reference(mu, logvar):
        z = R.reparameterize(mu, logvar, eps)
        return z, R.log_ratio(z, eps, logvar) if estimator == "mc" else R.gaussian_kl(mu, logvar)

    inputs = dict(mu=_rand(shape, dtype, 1, device=device), logvar=_rand(shape, dtype, 2, 0.5, device))
    check_against_reference(fused, reference, inputs, grad_names=("mu", "logvar"))


@pytest.mark.parametrize("shape", SHAPES)
def test_gaussian_kl(device, backend, dtype, shape):
    check_against_reference(
        lambda mu, logvar: aevb_fast.gaussian_kl(mu, logvar, backend=backend),
        R.gaussian_kl,
        dict(mu=_rand(shape, dtype, 1, device=device), logvar=_rand(shape, dtype, 2, device=device)),
        grad_names=("mu", "logvar"),
    )


# The Bernoulli targets' range check at the last element of a row past the CPU kernel's blocks and
# sub-chunks (tests/test_likelihoods.py checks the values across those boundaries).
@pytest.mark.skipif("cpu" not in CPU_BACKENDS, reason="the cpu kernels are not built")
@pytest.mark.parametrize("D", [63, 65, 511, 513, 1023, 1025, 1791])
def test_cpu_bernoulli_checks_targets_across_block_boundaries(D):
    logits = _rand((3, D), torch.float32, 1, 3.0)
    x = torch.rand(3, D, generator=torch.Generator().manual_seed(3))
    x[-1, -1] = 1.5  # the last element of the last sub-chunk and block
    with pytest.raises(ValueError, match=r"x holds values outside \[0, 1\]"):
        aevb_fast.bernoulli_log_prob(logits, x, backend="cpu")


def test_event_dims(device, backend):
    logits, x = _rand((2, 3, 4, 5), torch.float32, 1), torch.rand(2, 3, 4, 5)
    expected = R.bernoulli_log_prob(logits.reshape(2, 60), x.reshape(2, 60))
    out = aevb_fast.bernoulli_log_prob(logits.to(device), x.to(device), event_dims=3, backend=backend)
    torch.testing.assert_close(out.cpu(), expected)


def test_non_contiguous_inputs(device, backend):
    mu, logvar = _rand((7, 5), torch.float32, 1).t(), _rand((14, 5), torch.float32, 2)[::2].t()
    mu_d, logvar_d = mu.to(device), logvar.to(device)
    assert not mu_d.is_contiguous() and not logvar_d.is_contiguous()
    eps = _eps((5, 7), None, 1, backend, device=device)
    z, kl = aevb_fast.reparameterize_kl(mu_d, logvar_d, seed=1, backend=backend)
    assert_close(z, R.reparameterize(mu.double(), logvar.double(), eps), "z")  # z is float32: float32's tolerance
    torch.testing.assert_close(kl.cpu(), R.gaussian_kl(mu, logvar))


@ON_KERNELS
@pytest.mark.parametrize("estimator", ["analytic", "mc"])
def test_gradcheck_reparameterize(device, backend, estimator):
    mu = _rand((3, 4), torch.float64, 1, device=device).requires_grad_()
    logvar = _rand((3, 4), torch.float64, 2, device=device).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda mu, logvar: aevb_fast.reparameterize_kl(mu, logvar, 2, estimator=estimator, seed=3, backend=backend),
        (mu, logvar),
    )
    assert torch.autograd.gradcheck(lambda mu, logvar: aevb_fast.gaussian_kl(mu, logvar, backend=backend), (mu, logvar))


def _op_samples():
    g = torch.Generator().manual_seed(0)
    ops = torch.ops.aevb_fast
    for device, backend in KERNEL_BACKENDS:
        seed = torch.tensor([123, 0, 4], dtype=torch.int64, device=device)
        for dtype in (torch.float32, torch.bfloat16):

            def rand(*shape):
                return torch.randn(*shape, generator=g).to(device, dtype)

            mu, logvar = rand(4, 5).requires_grad_(), rand(4, 5).requires_grad_()
            for n_samples, mc, stl in [(1, False, False), (3, True, False), (0, False, False), (None, True, True)]:
                yield ops.reparameterize.default, (mu, logvar, seed, n_samples, mc, stl, backend)
            # Leading dims [2, 2] of 4 rows, one sample without a sample dimension: z [2, 2, 5].
            yield (
                ops.reparameterize.default,
                (mu.view(2, 2, 5), logvar.view(2, 2, 5), seed, None, False, False, backend),
            )
            grad_kl = torch.randn(4, generator=g).to(device)
            yield (
                ops.reparameterize_backward.default,
                (rand(2, 4, 5), grad_kl, mu.detach(), logvar.detach(), seed, 2, False, False, backend),
            )
            yield (
                ops.reparameterize_backward.default,
                (None, rand(2, 4).float(), mu.detach(), logvar.detach(), seed, 2, True, False, backend),
            )
            yield (
                ops.reparameterize_backward.default,
                (rand(2, 4, 5), rand(2, 4).float(), mu.detach(), logvar.detach(), seed, 2, True, True, backend),
            )


def _op_id(value):
    if isinstance(value, torch._ops.OpOverload):
        return str(value)
    return f"{next(a for a in value if isinstance(a, torch.Tensor)).device.type}-{value[-1]}"


@pytest.mark.parametrize("op, args", list(_op_samples()), ids=_op_id)
def test_opcheck(op, args):
    torch.library.opcheck(op, args)


@pytest.mark.skipif("cpu" not in CPU_BACKENDS, reason="the cpu kernels are not built")
def test_op_arguments_are_checked():
    ops, seed = torch.ops.aevb_fast, torch.tensor([1, 0, 2])
    with pytest.raises(
        ValueError,
        match=r"mu and logvar must be \[\.\.\., Z\] of one shape and dtype, got \(2, 3\) torch.float32 and \(2, 4\)",
    ):
        ops.reparameterize(torch.zeros(2, 3), torch.zeros(2, 4), seed, 1, False, False, "cpu")
    with pytest.raises(
        ValueError, match=r"seed must be int64 \[3\] \(key, first row, rows\) on cpu, got \(3,\) torch.float32"
    ):
        ops.reparameterize(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(3), 1, False, False, "cpu")
    with pytest.raises(
        ValueError, match=r"seed must be int64 \[3\] \(key, first row, rows\) on cpu, got \(1,\) torch.int64"
    ):
        ops.reparameterize(torch.zeros(2, 3), torch.zeros(2, 3), torch.tensor([1]), 1, False, False, "cpu")
    with pytest.raises(ValueError, match=r"x must be \[Nx, D\] with N a multiple of Nx, got \(2, 3\) beside \(5, 3\)"):
        ops.bernoulli_log_prob(torch.zeros(5, 3), torch.zeros(2, 3), "cpu")
    with pytest.raises(ValueError, match=r"grad must be \[N\] torch.float32 beside \(2, 3\), got \(2,\) torch.float64"):
        ops.bernoulli_log_prob_backward(
            torch.zeros(2, dtype=torch.float64), torch.zeros(2, 3), torch.zeros(2, 3), "cpu"
        )
    with pytest.raises(
        RuntimeError,
        match=r"cannot run with backend='cuda' on cpu tensors: the cuda backend runs on CUDA tensors, not cpu tensors",
    ):
        ops.gaussian_log_prob(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 3), "cuda")
    with pytest.raises(
        RuntimeError,
        match=r"cannot run with backend='torch' on cpu tensors: no 'torch' kernel; kernels: cpu, cuda, triton",
    ):
        ops.gaussian_log_prob(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 3), "torch")


@pytest.mark.skipif("cpu" not in CPU_BACKENDS, reason="the cpu kernels are not built")
def test_ops_refuse_tensors_on_different_devices():
    # The eager path of each op (the dispatcher would send a mixed call to the meta kernel): a
    # kernel is launched for the first tensor's device and must never see another device's pointer.
    from aevb_fast.ops import bernoulli, gaussian, reparameterize

    cpu, meta, seed = torch.zeros(2, 3), torch.zeros(2, 3, device="meta"), torch.tensor([1, 0, 2])
    with pytest.raises(
        ValueError, match=r"aevb_fast::reparameterize: expected tensors on one device, got mu on cpu, logvar on meta"
    ):
        reparameterize.reparameterize(cpu, meta, seed, 1, False, False, "cpu")
    with pytest.raises(
        ValueError, match=r"aevb_fast::bernoulli_log_prob: expected tensors on one device, got logits on cpu, x on meta"
    ):
        bernoulli.bernoulli_log_prob(cpu, meta, "cpu")
    with pytest.raises(
        ValueError,
        match=r"aevb_fast::gaussian_log_prob_backward: expected tensors on one device, "
        r"got x on cpu, mean on cpu, logvar on meta, grad on cpu",
    ):
        gaussian.gaussian_log_prob_backward(torch.zeros(2), cpu, cpu, meta, "cpu")


@pytest.mark.skipif("cpu" not in CPU_BACKENDS, reason="the cpu kernels are not built")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16], ids=str)
def test_large_outputs_are_reused_and_released(dtype):
    from aevb_fast.ops._native import HUGE_PAGE_MIN_BYTES, empty, native

    def resident_bytes():
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * 4096

    aevb_fast.empty_cache()
    shape = (HUGE_PAGE_MIN_BYTES // dtype.itemsize // 1000 + 1, 1000)
    cpu = torch.empty(0)
    t = empty(shape, dtype, cpu)
    assert t.shape == shape and t.dtype == dtype and t.is_contiguous() and t.data_ptr() % (2 << 20) == 0
    assert not t.untyped_storage().resizable()  # a DLPack storage, not torch's allocator's
    t.fill_(1.5)
    assert t.sum(dtype=torch.float64).item() == 1.5 * t.numel()
    address = t.data_ptr()
    del t
    assert native.cached_bytes() >= HUGE_PAGE_MIN_BYTES
    before = resident_bytes()
    for _ in range(20):
        u = empty(shape, dtype, cpu)
        assert u.data_ptr() == address  # the freed buffer, already faulted in
        u.fill_(0)
        del u
    assert resident_bytes() - before < HUGE_PAGE_MIN_BYTES
    aevb_fast.empty_cache()
    assert native.cached_bytes() == 0
    # Small ones come from torch's allocator.
    assert empty((3, 5), dtype, cpu).untyped_storage().resizable()


@pytest.mark.skipif("cpu" not in CPU_BACKENDS, reason="the cpu kernels are not built")
def test_output_cache_size_comes_from_the_environment():
    script = (
        "import torch, aevb_fast; from aevb_fast.ops._native import empty, native; "
        "empty((64, 1 << 20), torch.float32, torch.empty(0)); print(native.cached_bytes())"
    )
    for mib, expected in (("0", 0), ("512", 256 << 20)):
        run = subprocess.run(
            [sys.executable, "-c", script],
            env={**os.environ, "AEVB_FAST_CPU_CACHE_MB": mib},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, run.stderr
        assert int(run.stdout) == expected


@pytest.mark.skipif(native is None, reason="needs the compiled extension")
def test_the_binding_refuses_dtype_codes_sizes_and_addresses_no_kernel_takes():
    # Each is refused before the kernel runs, so the null pointers here are never read.
    with pytest.raises(ValueError, match="dtype code 9 is not one of csrc/common/dtype.h's"):
        native.bernoulli_forward(9, 0, 0, 0, 0, 1, 1, 1, 1)
    with pytest.raises(ValueError, match="bernoulli_forward: argument 5 is a size or count, got -1"):
        native.bernoulli_forward(0, 0, 0, 0, 0, -1, 1, 1, 1)
    with pytest.raises(ValueError, match="a likelihood kernel over 2 rows needs Nx >= 1 target rows, got 0"):
        native.gaussian_forward(0, 0, 0, 0, 0, 0, 2, 0, 3, 1)
    # Addresses are checked against their elements' alignment: the values' dtype, the targets' own
    # (uint8 at any address), the row outputs' float or double, a typed pointer's type.
    f32, f64, u8 = (DTYPE_CODES[t] for t in (torch.float32, torch.float64, torch.uint8))
    with pytest.raises(ValueError, match=r"argument 2 \(logits\) at address 4098 is not a multiple of 4"):
        native.bernoulli_forward(f32, u8, 4098, 4097, 4096, 0, 1, 0, 1)
    with pytest.raises(ValueError, match=r"argument 4 \(log_prob\) at address 4100 is not a multiple of 8"):
        native.bernoulli_forward(f64, u8, 4096, 4097, 4100, 0, 1, 0, 1)
    with pytest.raises(ValueError, match=r"argument 2 \(x\) at address 4097 is not a multiple of 4"):
        native.gaussian_forward(f32, f32, 4097, 4096, 4096, 4096, 0, 1, 0, 1)
    with pytest.raises(ValueError, match=r"argument 3 \(seed\) at address 4100 is not a multiple of 8"):
        native.reparameterize_forward(f32, 4096, 4096, 4100, 4096, 4096, 0, 1, 1, False, 1)
    assert native.bernoulli_forward(f32, u8, 4096, 4097, 4096, 0, 1, 0, 1) == 0  # no rows: nothing is read
    # The kernel list's C++ parameters are each binding's docstring.
    assert "int64_t N, int64_t Nx, int64_t D, int threads" in native.bernoulli_forward.__doc__
    assert {torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.uint8, torch.bool} == set(DTYPE_CODES)
