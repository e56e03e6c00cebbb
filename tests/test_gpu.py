"""The GPU backends (the compiled Triton kernels and the CUDA C++ kernels) on a GPU: no host sync,
CUDA-graph capture with fresh noise from the seed tensor, work on a side stream; for the CUDA
kernels, row sums that repeat bit for bit and do not depend on the buffers' alignment. And, on any
machine, what the build promises: the CUDA kernels compiled for sm_80 and sm_90 wherever nvcc is
found, and the reasons the cuda backend gives when it cannot serve."""

import os
import shutil
import types

import pytest
import torch
from helpers import LIKELIHOOD_INFOS

import aevb_fast
from aevb_fast.ops import backends
from aevb_fast.ops._native import native

GPU_BACKENDS = [b for b in ("triton", "cuda") if torch.cuda.is_available() and b in backends.usable("cuda")]
ON_GPU = pytest.mark.parametrize("backend", GPU_BACKENDS or [pytest.param(None, marks=pytest.mark.skip("needs a GPU"))])
CUDA_KERNELS = pytest.mark.skipif("cuda" not in GPU_BACKENDS, reason="needs a GPU and the CUDA kernels")


@pytest.mark.skipif(shutil.which("nvcc") is None or native is None, reason="needs nvcc and the built extension")
def test_the_build_compiles_the_cuda_kernels_for_sm80_and_sm90():
    assert native.build["cuda"], "nvcc is on the PATH but aevb_fast._C was built without its CUDA sources"
    assert set(native.build["cuda_architectures"].split(",")) >= {"80", "90"}
    # Every kernel of csrc/common/kernel_list.h, on both backends.
    assert {"reparameterize_forward", "bernoulli_backward"} <= set(native.kernels)
    assert {f"{name}_{p}" for name in aevb_fast.LIKELIHOODS for p in ("forward", "backward")} <= set(native.kernels)
    assert all(hasattr(native.cuda, name) for name in native.kernels)
    if os.environ.get("CI"):  # .ci/run builds with warnings as errors
        assert native.build["warnings_as_errors"]


@pytest.mark.parametrize(
    "build, count, reason",
    [
        ({"cuda": 0}, 0, r"aevb_fast._C was built without its CUDA kernels \(nvcc was not found at build time\)"),
        ({"cuda": 13000}, 0, r"the CUDA kernels see no usable device \(no CUDA-capable device is detected\)"),
    ],
)
def test_cuda_backend_says_why_it_cannot_serve(monkeypatch, build, count, reason):
    fake = types.SimpleNamespace(
        build=build,
        cuda=types.SimpleNamespace(
            device_count=lambda: count, unavailable_reason=lambda: "no CUDA-capable device is detected"
        ),
    )
    monkeypatch.setattr(backends, "native", fake)
    monkeypatch.setattr(backends, "_USABLE", {})
    monkeypatch.setattr(backends, "_RESOLVED", {})
    assert backends.unavailable_reason("cuda", "cpu") == "the cuda backend runs on CUDA tensors, not cpu tensors"
    with pytest.raises(RuntimeError, match=r"backend='cuda' cannot serve cuda tensors here: " + reason):
        backends.resolve("cuda", torch.device("cuda"))


def _training_step(backend):
    """Forward and backward of every op on the GPU with `backend`, through the ops and the public API."""
    mu = torch.randn(8, 4, device="cuda", requires_grad=True)
    logvar = torch.randn(8, 4, device="cuda", requires_grad=True)
    logits = torch.randn(2, 8, 6, device="cuda", requires_grad=True)
    x = torch.rand(8, 6, device="cuda")
    seed = torch.tensor([7, 0, 8], device="cuda")  # (key, first row, rows)

    def step():
        z, kl = torch.ops.aevb_fast.reparameterize(mu, logvar, seed, 2, True, backend)
        bernoulli = torch.ops.aevb_fast.bernoulli_log_prob(logits.view(16, 6) + z.sum(), x, backend)
        gaussian = torch.ops.aevb_fast.gaussian_log_prob(
            x, logits[0], logvar.mean(1, keepdim=True).expand(8, 6), backend
        )
        loss = bernoulli.sum() + gaussian.sum() + kl.sum() + aevb_fast.gaussian_kl(mu, logvar, "sum", backend=backend)
        for name, info in LIKELIHOOD_INFOS.items():  # every likelihood of the registry
            values = tuple(v.cuda() + logits[0] for v in info.values((8, 6), torch.float32, 3))
            loss = loss + aevb_fast.LIKELIHOODS[name].log_prob(values, x, "sum", backend=backend)
        return z, (loss, *torch.autograd.grad(loss, (mu, logvar, logits)))

    return step, seed


@ON_GPU
def test_no_host_device_sync(backend):
    step, _ = _training_step(backend)
    decoder = torch.nn.Linear(4, 6).cuda()
    x = torch.rand(8, 6, device="cuda")

    def api_step():
        # The public API with fresh seeds drawn on the host and copied over without waiting.
        mu = torch.randn(8, 4, device="cuda", requires_grad=True)
        logvar = torch.randn(8, 4, device="cuda", requires_grad=True)
        z = aevb_fast.reparameterize(mu, logvar, backend=backend)
        loss = aevb_fast.vae_loss(decoder(z), x, mu, logvar, backend=backend)
        loss = loss + aevb_fast.elbo_loss(
            decoder, x, mu, logvar, n_samples=3, estimator="mc", iwae=True, backend=backend
        )
        loss.backward()

    step(), api_step()  # compiles the Triton kernels
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        step()
        api_step()
    finally:
        torch.cuda.set_sync_debug_mode("default")


@ON_GPU
def test_cuda_graph_capture_draws_noise_from_the_seed_tensor(backend):
    step, seed = _training_step(backend)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        step()  # warm-up: compiles the Triton kernels outside the capture
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        z, outputs = step()
    for value in (11, 12):
        seed[0] = value
        graph.replay()
        expected_z, expected = step()
        torch.testing.assert_close(z, expected_z, rtol=0, atol=0)
        for out, ref in zip(outputs, expected):
            torch.testing.assert_close(out, ref)
    seed[0] = 11
    assert not torch.equal(step()[0], expected_z)


@ON_GPU
def test_runs_on_the_current_stream(backend):
    # Inputs made on a side stream and used there at once: a kernel launched on another stream
    # would race the producer.
    stream = torch.cuda.Stream()
    expected = aevb_fast.bernoulli_log_prob(torch.full((512, 4096), 0.5), torch.ones(512, 4096), backend="cpu")
    with torch.cuda.stream(stream):
        torch.cuda._sleep(10_000_000)  # keeps the stream busy while the fills and the kernel queue behind it
        logits = torch.full((512, 4096), 0.5, device="cuda")
        x = torch.ones(512, 4096, device="cuda")
        out = aevb_fast.bernoulli_log_prob(logits, x, backend=backend)
    stream.synchronize()
    torch.testing.assert_close(out.cpu(), expected)


@CUDA_KERNELS
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_cuda_row_sums_repeat_and_ignore_alignment(dtype):
    # The same rows read from a 16-byte aligned buffer (vector loads) and from one shifted by an
    # element (scalar loads) are summed in the same order: the same bits, every run.
    g = torch.Generator().manual_seed(0)
    values = torch.randn(64, 4096, generator=g).to(dtype)
    x = torch.rand(64, 4096, generator=g)
    aligned = values.cuda()
    shifted = torch.empty(64 * 4096 + 1, dtype=dtype, device="cuda")[1:].view(64, 4096)
    shifted.copy_(aligned)
    assert aligned.data_ptr() % 16 == 0 and shifted.data_ptr() % 16 != 0
    results = [
        (
            aevb_fast.bernoulli_log_prob(a, x.cuda(), backend="cuda"),
            aevb_fast.gaussian_log_prob(x.cuda(), a, a, backend="cuda"),
        )
        for a in (aligned, shifted, aligned)
    ]
    for other in results[1:]:
        for expected, actual in zip(results[0], other):
            assert torch.equal(actual, expected)


@CUDA_KERNELS
def test_cuda_kernels_run_on_the_tensors_device():
    if torch.cuda.device_count() < 2:
        pytest.skip("needs two GPUs")
    mu, logvar = torch.randn(4, 8), torch.randn(4, 8)
    expected = aevb_fast.reparameterize(mu, logvar, seed=3, backend="cpu")
    with torch.cuda.device(0):
        z = aevb_fast.reparameterize(mu.to("cuda:1"), logvar.to("cuda:1"), seed=3, backend="cuda")
    assert z.device == torch.device("cuda:1")
    torch.testing.assert_close(z.cpu(), expected, rtol=1e-6, atol=2e-6)
