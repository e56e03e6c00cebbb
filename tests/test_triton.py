"""The Triton kernels against the C++ CPU kernels and the launch rules: one seed gives the same eps
on both (the floats within the Philox contract's rtol 1e-6, atol 2e-6), values and gradients agree
within the dtype tolerances with small tiles that make every kernel loop over column blocks and
rows, the block table, availability messages and, on a GPU, no host sync and CUDA-graph capture.

On CPU tensors these run under Triton's interpreter (conftest sets TRITON_INTERPRET=1); on a GPU
machine with TRITON_INTERPRET=0 they run the compiled kernels on CUDA tensors."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TOLERANCES, assert_close

import aevb_fast
from aevb_fast.ops import backends

TRITON_DEVICES = [d for d in ("cpu", "cuda") if d in (["cuda"] if torch.cuda.is_available() else []) + ["cpu"]
                  and "triton" in backends.usable(d)]
pytestmark = pytest.mark.skipif(not TRITON_DEVICES or "cpu" not in backends.usable("cpu"),
                                reason="needs the Triton kernels and the C++ CPU kernels")
CUDA = pytest.mark.skipif("cuda" not in TRITON_DEVICES, reason="needs a GPU")
HALF_AND_FLOAT = [torch.float32, torch.float16, torch.bfloat16]


@pytest.fixture(params=TRITON_DEVICES)
def device(request):
    return request.param


@pytest.fixture
def small_tiles(monkeypatch):
    """Tiles of 64 elements under the interpreter, so that small shapes take the paths large ones
    take on a GPU: several programs, several rows per program, loops over column blocks."""
    from aevb_fast.kernels.triton import _launch

    monkeypatch.setattr(_launch, "INTERPRETER_TILE", 64)


def _rand(shape, dtype, seed, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g) * scale).to(dtype)


def _both(fn, *tensors, device):
    """fn(*tensors, backend) on the C++ CPU kernels and on the Triton kernels on `device`."""
    return fn(*tensors, "cpu"), fn(*(t.to(device) for t in tensors), "triton")


@pytest.mark.parametrize("shape, n_samples", [((3, 5), 1), ((13, 20), 4), ((2, 300), 2)])
def test_same_seed_same_eps_as_the_cpu_kernels(small_tiles, device, shape, n_samples):
    zeros = torch.zeros(shape)
    # A seed with both key words set and L * B * Z offsets per call.
    seed = 0x0123456789ABCDEF
    cpu, gpu = _both(lambda m, v, b: aevb_fast.reparameterize(m, v, n_samples, seed=seed, backend=b), zeros, zeros,
                     device=device)
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-6, atol=2e-6)
    assert cpu.std() > 0.5  # noise, not zeros


@pytest.mark.parametrize("dtype", HALF_AND_FLOAT, ids=str)
@pytest.mark.parametrize("estimator", ["analytic", "mc"])
def test_reparameterize_agrees_with_the_cpu_kernels(small_tiles, device, dtype, estimator):
    mu, logvar = _rand((13, 20), dtype, 1), _rand((13, 20), dtype, 2, 0.5)
    grad_z, grad_kl = _rand((3, 13, 20), dtype, 3), _rand((3, 13) if estimator == "mc" else (13,), torch.float32, 4)

    def run(mu, logvar, grad_z, grad_kl, backend):
        mu, logvar = mu.requires_grad_(), logvar.requires_grad_()
        z, kl = aevb_fast.reparameterize_kl(mu, logvar, 3, estimator=estimator, seed=5, backend=backend)
        return z, kl, *torch.autograd.grad((z, kl), (mu, logvar), (grad_z, grad_kl))

    for name, cpu, gpu in zip(("z", "kl", "grad mu", "grad logvar"), *_both(run, mu, logvar, grad_z, grad_kl,
                                                                           device=device)):
        assert gpu.dtype == cpu.dtype
        torch.testing.assert_close(gpu.cpu().double(), cpu.double(), **TOLERANCES[cpu.dtype], msg=name)


@pytest.mark.parametrize("dtype", HALF_AND_FLOAT, ids=str)
@pytest.mark.parametrize("target", [None, torch.uint8, torch.bool])
def test_likelihoods_agree_with_the_cpu_kernels(small_tiles, device, dtype, target):
    values = [_rand((2, 3, 300), dtype, seed, 2.0) for seed in (1, 2, 3)]
    x = torch.rand(3, 300, generator=torch.Generator().manual_seed(4))
    x = x.to(dtype) if target is None else (x > 0.5).to(target)
    weights = _rand((2, 3), torch.float32, 5)

    def run(a, b, c, x, backend):
        a, b, c = a.requires_grad_(), b.requires_grad_(), c.requires_grad_()
        bernoulli = aevb_fast.bernoulli_log_prob(a, x, backend=backend)
        gaussian = aevb_fast.gaussian_log_prob(x, b, c, backend=backend)
        w = weights.to(a.device)
        return bernoulli, gaussian, *torch.autograd.grad((bernoulli * w).sum() + (gaussian * w).sum(), (a, b, c))

    for cpu, gpu in zip(*_both(run, *values, x, device=device)):
        assert gpu.dtype == cpu.dtype
        assert_close(gpu, cpu)


def test_block_table():
    from aevb_fast.kernels.triton._launch import row_blocks

    compiled = object()  # anything but an interpreted kernel gets the GPU table
    assert row_blocks(compiled, 4096, 12288) == dict(BLOCK_ROWS=1, BLOCK_COLS=4096, num_warps=8)
    assert row_blocks(compiled, 65536, 256) == dict(BLOCK_ROWS=16, BLOCK_COLS=256, num_warps=8)
    assert row_blocks(compiled, 100, 784) == dict(BLOCK_ROWS=4, BLOCK_COLS=1024, num_warps=8)
    assert row_blocks(compiled, 100, 20) == dict(BLOCK_ROWS=128, BLOCK_COLS=32, num_warps=8)
    assert row_blocks(compiled, 3, 5) == dict(BLOCK_ROWS=4, BLOCK_COLS=8, num_warps=1)
    assert row_blocks(compiled, 1, 0) == dict(BLOCK_ROWS=1, BLOCK_COLS=1, num_warps=1)


def test_kernels_compile_for_the_gpu():
    # Every variant the launchers ask for, lowered to an sm_90 binary (no GPU needed): the
    # interpreter runs Python and would not catch what only the compiler checks.
    script = Path(__file__).with_name("compile_triton_kernels.py")
    env = {**os.environ, "TRITON_INTERPRET": "0", "TRITON_DEFAULT_FP_FUSION": "1"}
    run = subprocess.run([sys.executable, str(script), "sm_90"], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    assert run.stdout.count("sm_90 ") >= 40


def test_triton_on_cpu_tensors_needs_the_interpreter(monkeypatch):
    from aevb_fast.kernels import triton as kernels

    monkeypatch.setattr(kernels, "interpreted", False)
    monkeypatch.setattr(backends, "_USABLE", {})
    with pytest.raises(RuntimeError, match=r"backend='triton' cannot serve cpu tensors here: the Triton kernels run "
                                           r"on CPU tensors only under Triton's interpreter: set TRITON_INTERPRET=1"):
        aevb_fast.gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 3), backend="triton")


def _training_step(device):
    """Forward and backward of every op on `device` with the Triton kernels."""
    mu = torch.randn(8, 4, device=device, requires_grad=True)
    logvar = torch.randn(8, 4, device=device, requires_grad=True)
    logits = torch.randn(2, 8, 6, device=device, requires_grad=True)
    x = torch.rand(8, 6, device=device)
    seed = torch.tensor([7], device=device)

    def step():
        z, kl = torch.ops.aevb_fast.reparameterize(mu, logvar, seed, 2, True, "triton")
        bernoulli = torch.ops.aevb_fast.bernoulli_log_prob(logits.view(16, 6) + z.sum(), x, "triton")
        gaussian = torch.ops.aevb_fast.gaussian_log_prob(x, logits[0], logvar.mean(1, keepdim=True).expand(8, 6),
                                                         "triton")
        loss = bernoulli.sum() + gaussian.sum() + kl.sum() + aevb_fast.gaussian_kl(mu, logvar, "sum", backend="triton")
        return z, (loss, *torch.autograd.grad(loss, (mu, logvar, logits)))

    return step, seed


@CUDA
def test_no_host_device_sync():
    step, _ = _training_step("cuda")
    decoder = torch.nn.Linear(4, 6).cuda()
    x = torch.rand(8, 6, device="cuda")

    def api_step():
        # The public API with fresh seeds drawn on the host and copied over without waiting.
        mu = torch.randn(8, 4, device="cuda", requires_grad=True)
        logvar = torch.randn(8, 4, device="cuda", requires_grad=True)
        z = aevb_fast.reparameterize(mu, logvar, backend="triton")
        loss = aevb_fast.vae_loss(decoder(z), x, mu, logvar, backend="triton")
        loss = loss + aevb_fast.elbo_loss(decoder, x, mu, logvar, n_samples=3, estimator="mc", iwae=True,
                                          backend="triton")
        loss.backward()

    step(), api_step()  # compiles the kernels
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        step()
        api_step()
    finally:
        torch.cuda.set_sync_debug_mode("default")


@CUDA
def test_cuda_graph_capture_draws_noise_from_the_seed_tensor():
    step, seed = _training_step("cuda")
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        step()  # warm-up: compiles the kernels outside the capture
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        z, outputs = step()
    for value in (11, 12):
        seed.fill_(value)
        graph.replay()
        expected_z, expected = step()
        torch.testing.assert_close(z, expected_z, rtol=0, atol=0)
        for out, ref in zip(outputs, expected):
            torch.testing.assert_close(out, ref)
    seed.fill_(11)
    assert not torch.equal(step()[0], expected_z)
