"""The noise contract (docs/design.md, Randomness): Philox4x32-10 with counter (offset_lo, offset_hi,
0, 0) and key (seed_lo, seed_hi), turned into normals as tl.randn does. The integer stream is pinned
bit for bit to the published test vector and to Triton's own generator (run by its interpreter), the
floats to tl.randn within a few float32 ulps; the torch backend's generator (aevb_fast._philox) to
the kernels'; then the statistics and the seeding rules."""

import math
import os

import numpy as np
import pytest
import torch
from scipy import stats

import aevb_fast
from aevb_fast import _philox
from aevb_fast.ops._native import native

pytestmark = pytest.mark.skipif(native is None, reason="the compiled extension is not built")

# (seed, first offset): 0, a seed with both key words set, one just below 2^63, and offsets that
# cross 2^32, where the counter's high word starts to move.
CASES = [(0, 0), (0x0123456789ABCDEF, 12345), (2**63 - 2, 2**32 - 100), (987654321, 3 * 2**32 + 7)]


def _native_words(seed: int, offset: int, n: int) -> torch.Tensor:
    out = torch.empty(n, 4, dtype=torch.int32)
    native.philox_words(seed, offset, n, out.data_ptr())
    return out


def _native_normals(seed: int, offset: int, n: int) -> torch.Tensor:
    out = torch.empty(n, dtype=torch.float32)
    native.philox_normal(seed, offset, n, out.data_ptr())
    return out


def test_published_vector():
    # Random123's known-answer test for philox4x32_10: counter 0, key 0.
    words = _native_words(0, 0, 1)[0].numpy().view(np.uint32)
    assert [hex(w) for w in words] == ["0x6627e8d5", "0xe169c58d", "0xbc57ac4c", "0x9b00dbd8"]


@pytest.fixture(scope="module")
def triton_generator():
    triton = pytest.importorskip("triton")
    tl = pytest.importorskip("triton.language")
    # The interpreter runs the kernel on CPU tensors; compiled Triton (TRITON_INTERPRET=0, as on a GPU
    # machine) needs CUDA tensors, and the results come back to the CPU.
    if os.environ.get("TRITON_INTERPRET") == "1":
        device = "cpu"
    elif torch.cuda.is_available():
        device = "cuda"
    else:
        pytest.skip(
            "Triton runs compiled here (TRITON_INTERPRET is not 1) and needs a CUDA device, but none is "
            "available: set TRITON_INTERPRET=1 to run it under the interpreter"
        )

    @triton.jit
    def philox_kernel(seed_ptr, words_ptr, normals_ptr, offset, n, BLOCK: tl.constexpr):
        i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK).to(tl.int64)
        counters = offset + i
        seed = tl.load(seed_ptr)
        w0, w1, w2, w3 = tl.randint4x(seed, counters)
        mask = i < n
        tl.store(words_ptr + 4 * i, w0, mask=mask)
        tl.store(words_ptr + 4 * i + 1, w1, mask=mask)
        tl.store(words_ptr + 4 * i + 2, w2, mask=mask)
        tl.store(words_ptr + 4 * i + 3, w3, mask=mask)
        tl.store(normals_ptr + i, tl.randn(seed, counters), mask=mask)

    def generate(seed: int, offset: int, n: int):
        words = torch.empty(n, 4, dtype=torch.int32, device=device)
        normals = torch.empty(n, dtype=torch.float32, device=device)
        block = 1 << max(n - 1, 1).bit_length()
        philox_kernel[(1,)](
            torch.tensor([seed], dtype=torch.int64, device=device), words, normals, offset, n, BLOCK=block
        )
        return words.cpu(), normals.cpu()

    return generate


@pytest.mark.parametrize("seed, offset", CASES)
def test_matches_triton(triton_generator, seed, offset):
    n = 4096
    words, normals = triton_generator(seed, offset, n)
    assert torch.equal(_native_words(seed, offset, n), words)
    # libm's log and cos differ from numpy's by an ulp or two: rtol 1e-6, atol 2e-6 (docs/design.md).
    torch.testing.assert_close(_native_normals(seed, offset, n), normals, rtol=1e-6, atol=2e-6)


@pytest.mark.skipif(
    not (native is not None and native.build["cuda"] and native.cuda.device_count()),
    reason="needs the CUDA half of the extension and a CUDA device",
)
def test_cuda_generator_matches_the_cpu_one():
    seed, offset, n = 0x0123456789ABCDEF, 2**32 - 300, 1000
    words = torch.empty(n, 4, dtype=torch.int32)
    native.cuda.philox_words(seed, offset, n, words.data_ptr())
    assert torch.equal(words, _native_words(seed, offset, n))


def test_kernel_noise_is_the_generator_stream():
    # reparameterize(0, 0) returns eps itself; eps[l, b, j] is randn(seed, (l*rows + first + b)*Z + j), here
    # with first = 0 and rows = B (the whole batch).
    seed, shape = 42, (3, 5, 7)
    eps = aevb_fast.reparameterize(torch.zeros(shape[1:]), torch.zeros(shape[1:]), shape[0], seed=seed, backend="cpu")
    assert torch.equal(eps.flatten(), _native_normals(seed, 0, math.prod(shape)))


def test_normal_statistics():
    n = 1 << 20
    eps = aevb_fast.reparameterize(torch.zeros(n), torch.zeros(n), seed=7, backend="cpu").double()
    assert abs(eps.mean().item()) < 5 / math.sqrt(n)
    assert abs(eps.var().item() - 1) < 5 * math.sqrt(2 / n)
    assert stats.kstest(eps.numpy(), "norm").pvalue > 1e-3
    # Neighbouring elements are independent draws.
    assert abs(torch.corrcoef(torch.stack([eps[:-1], eps[1:]]))[0, 1].item()) < 5 / math.sqrt(n)


def test_same_seed_same_noise_and_fresh_seeds_otherwise():
    mu, logvar = torch.randn(4, 6), torch.randn(4, 6)
    z1 = aevb_fast.reparameterize(mu, logvar, seed=3, backend="cpu")
    assert torch.equal(z1, aevb_fast.reparameterize(mu, logvar, seed=3, backend="cpu"))
    assert not torch.equal(z1, aevb_fast.reparameterize(mu, logvar, seed=4, backend="cpu"))
    assert not torch.equal(
        aevb_fast.reparameterize(mu, logvar, backend="cpu"), aevb_fast.reparameterize(mu, logvar, backend="cpu")
    )
    torch.manual_seed(11)
    z2 = aevb_fast.reparameterize(mu, logvar, backend="cpu")
    torch.manual_seed(11)
    assert torch.equal(z2, aevb_fast.reparameterize(mu, logvar, backend="cpu"))


@pytest.mark.parametrize("seed, offset", CASES)
def test_the_torch_generator_matches_the_kernels(seed, offset):
    # aevb_fast._philox in torch integer ops: the words bit for bit, the normals within float32 ulps
    # (torch's log and cos against the kernels' own).
    n = 4096
    offsets = torch.arange(offset, offset + n)
    words = torch.stack(_philox.philox_words(seed, offsets), 1)
    assert torch.equal(words.to(torch.int32), _native_words(seed, offset, n))  # int32 keeps the low 32 bits
    assert words.min() >= 0 and words.max() < 2**32
    torch.testing.assert_close(
        _philox.philox_normal(seed, offsets), _native_normals(seed, offset, n), rtol=1e-6, atol=2e-6
    )


@pytest.mark.parametrize("seed", [5, None])
def test_the_torch_backend_draws_the_kernels_noise(seed):
    # One seed (or one torch.manual_seed) gives the same z and KL on the reference backend as on the
    # kernels, and leaves torch's generator where they leave it; batch_rows slices the same noise.
    mu, logvar = torch.randn(6, 5, dtype=torch.float64), torch.randn(6, 5, dtype=torch.float64)
    results = []
    for backend in ("cpu", "torch"):
        torch.manual_seed(1)
        z, kl = aevb_fast.reparameterize_kl(mu, logvar, 3, estimator="mc", seed=seed, backend=backend)
        results.append((z, kl, torch.rand(1)))
    (z, kl, after), (z_ref, kl_ref, after_ref) = results
    torch.testing.assert_close(z_ref, z, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(kl_ref, kl, rtol=1e-5, atol=1e-5)
    assert torch.equal(after, after_ref)
    part = aevb_fast.reparameterize(mu[2:5], logvar[2:5], 3, seed=9, backend="torch", batch_rows=(2, 6))
    whole = aevb_fast.reparameterize(mu, logvar, 3, seed=9, backend="torch")
    assert torch.equal(part, whole[:, 2:5])
