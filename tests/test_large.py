"""Tensors past 2^31 elements: the kernels index with int64 (docs/design.md). Each case puts a
marker at the far end of a buffer of more than 2^31 elements, where an int32 index would wrap,
and checks the value computed there: reparameterize, and every likelihood of the table (one
bfloat16 buffer of 4.3 GB serving as each of its values, one row of targets read again by every
row). It runs for every compiled kernel backend: the Triton interpreter would take hours at this size."""

import pytest
import torch
from helpers import KERNEL_BACKENDS, LIKELIHOOD_INFOS

import aevb_fast
from aevb_fast import LIKELIHOODS
from aevb_fast.ops._native import native

COMPILED = [(d, b) for d, b in KERNEL_BACKENDS if (d, b) != ("cpu", "triton")]
pytestmark = [
    pytest.mark.skipif(native is None, reason="the compiled extension is not built"),
    pytest.mark.parametrize("device, backend", COMPILED, ids=[f"{d}-{b}" for d, b in COMPILED]),
]

BIG = 2**31 + 2**20


def test_reparameterize_past_int32_elements(device, backend):
    # z [L, 1, Z] with L * Z > 2^31: the noise offsets and z indices of the last sample pass 2^31.
    Z = 2**20
    L = BIG // Z
    mu, logvar = torch.zeros(1, Z, dtype=torch.bfloat16), torch.zeros(1, Z, dtype=torch.bfloat16)
    mu[0, -1] = 3.0
    z, log_ratio = aevb_fast.reparameterize_kl(
        mu.to(device), logvar.to(device), L, estimator="mc", seed=17, backend=backend
    )
    assert z.numel() > 2**31
    last = torch.empty(Z, dtype=torch.float32)
    native.philox_normal(17, (L - 1) * Z, Z, last.data_ptr())
    expected = last.clone()
    expected[-1] += 3.0
    # Bit-identical on the CPU; elsewhere libm's log and cos may differ by an ulp, which can move
    # the bfloat16 rounding by one step.
    exact = device == "cpu"
    torch.testing.assert_close(
        z[-1, 0].float().cpu(), expected.bfloat16().float(), rtol=0 if exact else 2**-7, atol=0 if exact else 1e-5
    )
    # log q - log p = 1/2 sum(z^2 - eps^2 - logvar), in float32 from the unrounded z.
    torch.testing.assert_close(
        log_ratio[-1, 0].cpu(),
        0.5 * (expected.double().square() - last.double().square()).sum().float(),
        rtol=1e-5,
        atol=1e-3,
    )


@pytest.mark.parametrize("name", list(LIKELIHOOD_INFOS))
def test_likelihood_past_int32_elements(device, backend, name):
    # N rows of D zero values (a marker in the last element of the last row) against one row of
    # targets shared by all N: the last row's reading of both passes 2^31.
    entry, info = LIKELIHOODS[name], LIKELIHOOD_INFOS[name]
    D = 2**20
    N = BIG // D
    # One buffer serves as every value (a mixture's of one component): the kernels only read them.
    value = torch.zeros(entry.value_shape((N, D), components=1), dtype=torch.bfloat16, device=device)
    value[-1, -1] = 5.0
    values = [value] * len(entry.params)
    x = torch.ones(1, D, dtype=torch.bool if info.int_targets else torch.float32, device=device)
    log_prob = info.call(tuple(values), x, backend=backend)
    assert values[0].numel() > 2**31
    for row in (0, N - 1):
        expected = entry.reference(tuple(v[row].cpu().double() for v in values), x[0].cpu().double())
        assert log_prob[row].item() == pytest.approx(expected.item(), rel=1e-5), f"row {row}"
