"""Every likelihood of aevb_fast.LIKELIHOODS, from its row in the likelihood table (tests/helpers.py),
on every device and backend against the float64 reference: values and gradients per dtype and shape,
integer targets, targets shared across samples, rows across the CPU kernels' block boundaries,
non-finite and extreme values, float64 gradcheck, opcheck of its ops, torch.compile, its fused head against the
plain layers, vae_loss and elbo_loss with it, the backends agreeing, and the paper's model trained
with it. A likelihood added to the registry is tested here without a test written for it; one
without a table row fails the first test."""

import math

import pytest
import torch
from helpers import (
    DEVICES,
    KERNEL_BACKENDS,
    LIKELIHOOD_INFOS,
    TOLERANCES,
    assert_close,
    check_against_reference,
    normal,
)

import aevb_fast
from aevb_fast.training.models import VAE

NAMES = sorted(aevb_fast.LIKELIHOODS)
ON_KERNELS = pytest.mark.parametrize("device, backend", KERNEL_BACKENDS, ids=[f"{d}-{b}" for d, b in KERNEL_BACKENDS])
# [batch..., features]: one element, odd sizes, rows longer than a kernel chunk (1024), leading
# dims, and an empty batch.
SHAPES = [(1, 1), (3, 5), (2, 1500), (2, 3, 4), (0, 6)]


@pytest.fixture(params=NAMES)
def likelihood(request):
    return aevb_fast.LIKELIHOODS[request.param], LIKELIHOOD_INFOS[request.param]


def _inputs(info, entry, shape, dtype, device, target_dtype=None):
    values = info.values(shape, dtype, 1, device)
    x = info.targets(shape, 7)
    x = (x > 0.5).to(target_dtype) if target_dtype in (torch.uint8, torch.bool) else x.to(target_dtype or dtype)
    return {**dict(zip(entry.params, values)), "x": x.to(device)}


def _check_log_prob(entry, info, inputs, backend, grad_names, reference_x=None, tolerance=None):
    def fused(x, **values):
        return info.call(tuple(values[p] for p in entry.params), x, backend=backend)

    def reference(x, **values):
        values = tuple(values[p] for p in entry.params)
        x = x if reference_x is None else reference_x(x, values[0])
        return entry.reference(values, x)

    dtype = inputs[entry.params[0]].dtype
    check_against_reference(
        fused, reference, inputs, grad_names=grad_names, tolerance=tolerance or info.tolerance(dtype)
    )


def test_every_likelihood_has_a_row_in_the_table():
    assert set(LIKELIHOOD_INFOS) == set(aevb_fast.LIKELIHOODS)


@pytest.mark.parametrize("shape", SHAPES)
def test_log_prob(likelihood, device, backend, dtype, shape):
    entry, info = likelihood
    inputs = _inputs(info, entry, shape, dtype, device)
    _check_log_prob(entry, info, inputs, backend, info.grad_names(entry.params))


@pytest.mark.parametrize("target_dtype", [torch.uint8, torch.bool], ids=str)
def test_integer_targets(likelihood, device, backend, target_dtype):
    entry, info = likelihood
    if not info.int_targets:
        pytest.skip(f"{entry.name} does not model integer data")
    inputs = _inputs(info, entry, (3, 7), torch.float32, device, target_dtype)
    _check_log_prob(entry, info, inputs, backend, entry.params)


@pytest.mark.parametrize("rows", ["[B, D]", "[1, B, D]", "[1, D]"])
def test_targets_shared_across_samples(likelihood, device, backend, dtype, rows):
    # x [B, D] (or with leading 1s, or one row [1, D]) serves values [L, B, D]: the kernels read its
    # rows again instead of a copy.
    entry, info = likelihood
    inputs = _inputs(info, entry, (4, 3, 10), dtype, device)
    inputs["x"] = {"[B, D]": inputs["x"][0], "[1, B, D]": inputs["x"][:1], "[1, D]": inputs["x"][0, :1]}[rows]
    # x's gradient sums the L = 4 samples' terms, each rounded to the values' dtype (where it is the
    # gradient of a value, as the Gaussian's -d/dmean): up to 4 roundings.
    tolerance = {k: 4 * v for k, v in (info.tolerance(dtype) or TOLERANCES[dtype]).items()}
    _check_log_prob(
        entry, info, inputs, backend, info.grad_names(entry.params), lambda x, v: x.expand(4, 3, 10), tolerance
    )


# Row lengths on either side of the CPU likelihood kernels' boundaries: prefetch blocks of 64
# elements, sub-chunks of 256 (the last of a chunk takes up to 511), and chunks of 1024.
@pytest.mark.parametrize("D", [63, 65, 255, 257, 511, 513, 767, 769, 1023, 1025, 1791])
def test_rows_across_block_boundaries(likelihood, D):
    entry, info = likelihood
    for backend in aevb_fast.ops.backends.usable("cpu"):
        _check_log_prob(entry, info, _inputs(info, entry, (3, D), torch.float32, "cpu"), backend, entry.params)


@ON_KERNELS
def test_gradcheck(likelihood, device, backend):
    entry, info = likelihood
    values = [v.requires_grad_() for v in info.values((2, 3, 5), torch.float64, 1, device)]
    x = info.targets((3, 5), 2).to(device).requires_grad_(info.x_grad)
    assert torch.autograd.gradcheck(lambda x, *v: info.call(v, x, backend=backend), (x, *values))


# The Triton interpreter computes with numpy, which warns on arithmetic with NaN and Inf.
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:divide by zero encountered:RuntimeWarning")
def test_nonfinite_values_propagate_like_the_reference(likelihood, device, backend):
    entry, info = likelihood
    values = [v.clone() for v in info.values((4, 2), torch.float32, 1)]
    for i, v in enumerate(values):
        v[i % 4, 0] = float("nan")
        v[(i + 2) % 4, 1] = float("inf") if i % 2 else -float("inf")
    x = info.targets((4, 2), 3).float()
    out = info.call(tuple(v.to(device) for v in values), x.to(device), backend=backend).cpu()
    torch.testing.assert_close(out, entry.reference(tuple(values), x), equal_nan=True)


@ON_KERNELS
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("target", ["values' dtype", "bool", "uint8"])
def test_opcheck(likelihood, device, backend, dtype, target):
    # The op and its backward: 6 rows of values beside 3 target rows, floating targets taking gradients.
    entry, info = likelihood
    op = getattr(torch.ops.aevb_fast, f"{entry.name}_log_prob").default
    values = [v.requires_grad_() for v in info.values((6, 7), dtype, 1, device)]
    x = info.targets((3, 7), 2).to(device, dtype).requires_grad_(info.x_grad)
    if target != "values' dtype":
        x = (x.detach() > 0.5).to(getattr(torch, target))
    by_name = {**dict(zip(entry.params, values)), "x": x}
    args = [by_name[a.name] for a in op._schema.arguments if a.name != "backend"]
    torch.library.opcheck(op, (*args, backend))
    backward = getattr(torch.ops.aevb_fast, f"{entry.name}_log_prob_backward").default
    grad = torch.randn(6, generator=torch.Generator().manual_seed(3)).to(
        device
    )  # float32: the rows' dtype beside float32 and bfloat16
    torch.library.opcheck(backward, (grad, *(a.detach() for a in args), backend))


def test_non_contiguous_inputs(likelihood, device, backend):
    # Transposed values and strided targets give what their contiguous copies give.
    entry, info = likelihood
    values = [v.transpose(0, 1) for v in info.values((8, 6), torch.float32, 1)]
    x = info.targets((12, 8), 2).float()[::2]
    out = info.call(tuple(v.to(device) for v in values), x.to(device), backend=backend)
    assert not x.is_contiguous() and not values[0].is_contiguous()
    torch.testing.assert_close(out.cpu(), entry.reference(tuple(values), x))


@ON_KERNELS
def test_compiles_without_graph_breaks(likelihood, device, backend):
    entry, info = likelihood
    values = tuple(v.requires_grad_() for v in info.values((4, 9), torch.float32, 1, device))
    x = info.targets((4, 9), 2).float().to(device)

    def loss(x, *v):
        return info.call(v, x, reduction="sum", backend=backend)

    torch._dynamo.reset()
    expected = loss(x, *values)
    actual = torch.compile(loss, fullgraph=True)(x, *values)
    torch.testing.assert_close(actual, expected)
    for g, e in zip(torch.autograd.grad(actual, values), torch.autograd.grad(expected, values)):
        torch.testing.assert_close(g, e)


@pytest.mark.parametrize("device", DEVICES)
def test_backends_agree(likelihood, device):
    entry, info = likelihood
    values = tuple(info.values((5, 33), torch.float32, 1, device))
    x = info.targets((5, 33), 2).float().to(device)
    expected = entry.reference(tuple(v.double() for v in values), x.double())
    for backend in aevb_fast.ops.backends.usable(device):
        assert_close(info.call(values, x, backend=backend), expected, backend)


@pytest.mark.parametrize("reduction", ["none", "sum"])
@pytest.mark.parametrize("chunk_rows", [None, 5])
def test_fused_head_is_the_layers_and_the_likelihood(likelihood, device, backend, reduction, chunk_rows):
    entry, info = likelihood
    dtype = torch.float64
    inputs = {"h": normal((3, 7, 5), dtype, 1, device=device)}
    width = entry.output_width(11)  # a mixture's layers give its K components of each of the 11
    for i, _ in enumerate(entry.params):
        inputs[f"w{i}"] = normal((width, 5), dtype, 2 + 2 * i, 0.5, device)
        inputs[f"b{i}"] = normal((width,), dtype, 3 + 2 * i, device=device)
    inputs["x"] = info.targets((7, 11), 9).to(device)
    n = len(entry.params)

    def layers(args):
        return [(args[f"w{i}"], args[f"b{i}"]) for i in range(n)]

    def fused(h, x, **args):
        return info.head(h, layers(args), x, reduction, chunk_rows=chunk_rows, backend=backend)

    def reference(h, x, **args):
        linear = [lambda h, w=w, b=b: torch.nn.functional.linear(h, w, b) for w, b in layers(args)]
        values = entry.decoder_values(linear, h)
        return aevb_fast.reference.reduce(entry.reference(values, x.expand(*h.shape[:-1], x.shape[-1])), reduction)

    names = ("h", *(f"w{i}" for i in range(n)), *(f"b{i}" for i in range(n)))
    check_against_reference(fused, reference, inputs, grad_names=names, tolerance=TOLERANCES[dtype])


def test_vae_loss_and_elbo_loss(likelihood, device, backend):
    entry, info = likelihood
    mu, logvar = normal((4, 3), torch.float32, 1, device=device), normal((4, 3), torch.float32, 2, 0.3, device)
    values = info.values((4, 6), torch.float32, 3, device)
    x = info.targets((4, 6), 4).float().to(device)
    recon = values[0] if len(values) == 1 else values
    loss = aevb_fast.vae_loss(recon, x, mu, logvar, "none", beta=0.5, likelihood=entry.name, backend=backend)
    kl = aevb_fast.reference.gaussian_kl(mu.double(), logvar.double())
    expected = -(entry.reference(tuple(v.double() for v in values), x.double()) - 0.5 * kl)
    assert_close(loss, expected, "vae_loss")
    layers = [torch.nn.Linear(3, entry.output_width(6)).to(device).double() for _ in values]

    def decode(z):
        out = entry.decoder_values(layers, z.double())
        return out[0] if len(out) == 1 else out

    bound = aevb_fast.elbo_loss(
        decode,
        x.double(),
        mu.double(),
        logvar.double(),
        likelihood=entry.name,
        seed=5,
        backend=backend,
        reduction="none",
    )
    z = aevb_fast.reparameterize(mu.double(), logvar.double(), 1, seed=5, backend=backend)
    out = decode(z)
    out = (out,) if len(values) == 1 else out
    log_px = entry.reference(tuple(o[0] for o in out), x.double())
    assert_close(bound, -(log_px - kl), "elbo_loss")


@pytest.mark.parametrize("fused_head", [False, True])
def test_the_paper_model_trains_with_it(likelihood, fused_head):
    entry, info = likelihood
    torch.manual_seed(0)
    model = VAE(data_dim=12, hidden_dim=8, latent_dim=2, likelihood=entry.name)
    x = info.targets((32, 12), 5).clamp(0, 1).float()
    optimizer = aevb_fast.optim.Adagrad(model.parameters(), lr=0.1)
    losses = []
    for _ in range(30):
        optimizer.zero_grad()
        loss = model(x, fused_head=fused_head)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-5:]) < sum(losses[:5])


# Magnitudes at and past float32's exponential range (exp overflows past 88.7 and is subnormal
# below -87.3), a subnormal, for every value and a target of each sign.
EXTREMES = [-1e30, -1e4, -104.0, -100.0, -50.0, -1.0, 0.0, 1e-40, 1.0, 50.0, 88.0, 89.0, 100.0, 1e4, 1e30]


# The Triton interpreter computes with numpy, which warns on arithmetic that overflows or meets inf.
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_extreme_finite_values_follow_the_reference(likelihood, device, backend):
    # Every combination of extreme values and targets: the result (and on the kernels the values'
    # gradients) is the float64 reference's rounded to float32 (past the range, its infinity), with NaN exactly where
    # the reference has one.
    entry, info = likelihood
    grid = torch.cartesian_prod(*[torch.tensor(EXTREMES, dtype=torch.float64)] * (len(entry.params) + 1))
    x = (grid[:, 0].clamp(0, 1) if info.exponents[-1] is None else grid[:, 0])[:, None]
    values = tuple(
        grid[:, i + 1].reshape(entry.value_shape((-1, 1), components=1)).requires_grad_()
        for i in range(len(entry.params))
    )
    fused_values = tuple(v.detach().float().to(device).requires_grad_() for v in values)
    expected = entry.reference(values, x)
    out = info.call(fused_values, x.float().to(device), backend=backend)
    assert not out.isnan().any() or expected.isnan().any()
    assert_close(out, expected, "log p")
    if backend == "torch":
        # The reference formula under float32 autograd: its intermediates (the Gaussian's r * 2r / 2)
        # overflow up to a factor of 4 before the gradient does. The kernels' contract, not its.
        return
    grads = torch.autograd.grad(out.sum(), fused_values)
    for name, g, r in zip(entry.params, grads, torch.autograd.grad(expected.sum(), values)):
        assert_close(g, r, f"d/d{name}")
