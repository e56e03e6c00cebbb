"""Property-based tests (hypothesis): every op, the fused decoder heads included, on every CPU
backend (the C++ kernels, Triton under the interpreter, the reference) for random shapes (sizes 1
and odd ones, leading dims), dtypes, memory layouts (contiguous, strided, transposed) and value
scales, against the float64 reference, gradients included. The number of examples is bounded for CI;
HYPOTHESIS_PROFILE=long runs more."""

import math
import os

import pytest
import torch
from helpers import CPU_BACKENDS, DTYPES, LIKELIHOOD_INFOS, TOLERANCES, check_against_reference

import aevb_fast
from aevb_fast import reference as R

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True)
settings.register_profile("long", max_examples=500, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

BACKENDS = st.sampled_from(CPU_BACKENDS)
# The interpreter runs each Triton program in numpy: keep its shapes small.
SIZE = st.integers(1, 9) | st.sampled_from([1, 17, 33])
LAYOUTS = ["contiguous", "strided", "transposed"]


@st.composite
def tensors(draw, shape, dtype, low_exponent=-2, high_exponent=1):
    """A tensor of `shape` and `dtype` whose values have magnitudes 10^low .. 10^high, laid out
    contiguously, every other element of a wider tensor, or as the transpose of its transpose."""
    seed = draw(st.integers(0, 2**31 - 1))
    scale = 10.0 ** draw(st.integers(low_exponent, high_exponent))
    layout = draw(st.sampled_from(LAYOUTS))
    g = torch.Generator().manual_seed(seed)
    if layout == "strided":
        t = torch.randn(*shape[:-1], 2 * shape[-1], generator=g, dtype=torch.float64)[..., ::2]
    elif layout == "transposed" and len(shape) >= 2:
        t = torch.randn(*shape[:-2], shape[-1], shape[-2], generator=g, dtype=torch.float64).transpose(-1, -2)
    else:
        t = torch.randn(*shape, generator=g, dtype=torch.float64)
    return (t * scale).to(dtype)


@st.composite
def problems(draw):
    """(backend, dtype, batch shape, feature size)."""
    backend = draw(BACKENDS)
    dtype = draw(st.sampled_from(DTYPES))
    batch = tuple(draw(st.lists(SIZE, min_size=1, max_size=2)))
    return backend, dtype, batch, draw(SIZE)


@given(problems(), st.data())
def test_reparameterize_kl(problem, data):
    backend, dtype, batch, Z = problem
    n_samples = data.draw(st.none() | st.integers(1, 3))
    estimator = data.draw(st.sampled_from(["analytic", "mc"]))
    mu = data.draw(tensors((*batch, Z), dtype, -2, 1))
    logvar = data.draw(tensors((*batch, Z), dtype, -2, 0))
    seed = data.draw(st.integers(0, 2**63 - 1))
    zeros = torch.zeros((*batch, Z), dtype=torch.float64 if dtype == torch.float64 else torch.float32)
    eps = aevb_fast.reparameterize(zeros, zeros, n_samples, seed=seed, backend=backend).double()

    def reference(mu, logvar):
        z = R.reparameterize(mu, logvar, eps)
        return z, R.log_ratio(z, eps, logvar) if estimator == "mc" else R.gaussian_kl(mu, logvar)

    check_against_reference(
        lambda mu, logvar: aevb_fast.reparameterize_kl(
            mu, logvar, n_samples, estimator=estimator, seed=seed, backend=backend
        ),
        reference,
        dict(mu=mu, logvar=logvar),
        grad_names=("mu", "logvar"),
    )


@pytest.mark.parametrize("name", sorted(aevb_fast.LIKELIHOODS))
@given(problem=problems(), data=st.data())
def test_likelihoods(name, problem, data):
    # Every likelihood of the registry, from its row of the likelihood table.
    backend, dtype, batch, D = problem
    entry, info = aevb_fast.LIKELIHOODS[name], LIKELIHOOD_INFOS[name]
    *value_exponents, target_exponents = info.exponents
    shape = entry.value_shape((*batch, D), components=2)  # a mixture's components last
    values = {p: data.draw(tensors(shape, dtype, *e)) for p, e in zip(entry.params, value_exponents)}
    # Targets of a suffix of the batch dims (shared by the leading ones), or of all of them.
    x_shape = (*batch[data.draw(st.integers(0, len(batch))) :], D)
    kinds = ["float", "uint8", "bool"] if info.int_targets else ["float"]
    kind = data.draw(st.sampled_from(kinds))
    if target_exponents is None:
        x = torch.rand(x_shape, generator=torch.Generator().manual_seed(data.draw(st.integers(0, 2**31 - 1))))
    else:
        x = data.draw(tensors(x_shape, torch.float64, *target_exponents))
    x = {"float": x.to(dtype), "uint8": (x > 0.5).to(torch.uint8), "bool": x > 0.5}[kind]

    def fused(x, **v):
        return info.call(tuple(v[p] for p in entry.params), x, backend=backend)

    def reference(x, **v):
        v = tuple(v[p] for p in entry.params)
        return entry.reference(v, x.expand(*batch, D))

    inputs = {**values, "x": x}
    own = info.tolerance(dtype)
    check_against_reference(fused, reference, inputs, grad_names=entry.params, tolerance=own)
    if kind == "float" and info.x_grad:
        # x's gradient sums its copies' terms (rows sharing targets), each rounded in the values'
        # dtype where it is the gradient of a value (the Gaussian's -d/dmean): a copy's rounding each.
        copies = math.prod(batch) // math.prod(x_shape[:-1])
        tolerance = {k: v * copies for k, v in (own or TOLERANCES[dtype]).items()}
        check_against_reference(fused, reference, inputs, grad_names=("x",), tolerance=tolerance)


@given(problems(), st.data())
def test_linear_heads(problem, data):
    from test_linear_likelihood import _bernoulli_reference, _gaussian_reference, _tolerance

    backend, dtype, batch, D = problem
    H = data.draw(SIZE)
    reduction = data.draw(st.sampled_from(["none", "sum", "mean"]))
    chunk_rows = data.draw(st.none() | st.integers(1, 12))
    bias = data.draw(st.booleans())
    gaussian = data.draw(st.booleans())
    inputs = dict(h=data.draw(tensors((*batch, H), dtype, -1, 0)))
    for i in range(2 if gaussian else 1):
        # The Gaussian's layers small (outputs of order 1): squared residuals scaled by exp(-logvar)
        # of large sums make the gradient sums cancel beyond the dtype's digits, in nn.Linear as
        # here (test_extremes covers the extremes).
        inputs[f"w{i}"] = data.draw(tensors((D, H), dtype, -2, -1) if gaussian else tensors((D, H), dtype, -1, 0))
        inputs[f"b{i}"] = data.draw(tensors((D,), dtype, -1, 0)) if bias else None
    x_batch = batch[data.draw(st.integers(0, len(batch))) :]
    inputs["x"] = torch.rand(*x_batch, D, generator=torch.Generator().manual_seed(data.draw(st.integers(0, 99)))).to(
        dtype
    )
    grads = tuple(k for k, v in inputs.items() if k != "x" and v is not None)
    if gaussian:
        sigmoid = data.draw(st.booleans())
        check_against_reference(
            lambda h, w0, b0, w1, b1, x: aevb_fast.linear_gaussian_log_prob(
                h,
                w0,
                b0,
                w1,
                b1,
                x,
                reduction,
                mean_activation="sigmoid" if sigmoid else "identity",
                chunk_rows=chunk_rows,
                backend=backend,
            ),
            _gaussian_reference(reduction, sigmoid, dtype),
            inputs,
            grad_names=grads,
            tolerance=_tolerance(dtype),
        )
    else:
        check_against_reference(
            lambda h, w0, b0, x: aevb_fast.linear_bernoulli_log_prob(
                h, w0, b0, x, reduction, chunk_rows=chunk_rows, backend=backend
            ),
            _bernoulli_reference(reduction, dtype),
            inputs,
            grad_names=grads,
            tolerance=_tolerance(dtype),
        )
