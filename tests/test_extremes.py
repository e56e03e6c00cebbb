"""Every backend at the extremes of its inputs, against the float64 reference rounded to float32:
logits of +-1e4, +-88 and subnormal size, targets exactly 0 and 1, logvar of +-80 and past float32's
exp limit (|logvar| > 88; for the Gaussian likelihood up to +-1e4), x == mean. Where the exact value
lies beyond float32's range the result is the infinity of its sign; a finite input never gives NaN.
The Bernoulli likelihood also over the table of logits (+-inf, large, 0, NaN) by targets (0, 1 and
between; float, uint8 and bool) in every dtype: the limit of the formula with 0 log 0 = 0.
Limits (documented in aevb_fast.functional): reparameterize's sigma = exp(logvar / 2) overflows
float32 past logvar = 177, so z is checked up to logvar = 170."""

import itertools
import math

import pytest
import torch
from helpers import check_against_reference

import aevb_fast
from aevb_fast import reference as R

SUBNORMAL = 1e-40
# The Triton interpreter computes with numpy, which warns on overflow and on the branch a select drops.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def _expected(value: torch.Tensor) -> torch.Tensor:
    """A float64 reference value as float32 represents it: beyond the range, the signed infinity."""
    return value.detach().to(torch.float32)


def _check(actual, reference, what):
    actual, expected = actual.detach().cpu(), _expected(reference)
    assert not actual.isnan().any(), f"{what}: NaN from finite inputs: {actual}"
    torch.testing.assert_close(actual, expected, rtol=2e-5, atol=1e-6, msg=lambda m: f"{what}: {m}")


def _grads(out, inputs):
    return torch.autograd.grad(out.sum(), inputs)


LOGITS = [1e4, -1e4, 88.0, -88.0, 89.0, -104.0, SUBNORMAL, -SUBNORMAL, 0.0, 30.0, -30.0]


@pytest.mark.parametrize("target", [0.0, 1.0, 0.5])
def test_bernoulli_extreme_logits(device, backend, target):
    logits = torch.tensor([LOGITS], device=device, requires_grad=True)
    x = torch.full((1, len(LOGITS)), target, device=device)
    out = aevb_fast.bernoulli_log_prob(logits, x, backend=backend)
    ref_logits = torch.tensor([LOGITS], dtype=torch.float64, requires_grad=True)
    ref = R.bernoulli_log_prob(ref_logits, x.cpu().double())
    _check(out, ref, "log p")
    _check(_grads(out, logits)[0], _grads(ref, ref_logits)[0], "d/dlogits")


TABLE_LOGITS = [-math.inf, -1e4, 0.0, 1e4, math.inf, math.nan]
TABLE_TARGETS = {"float": [0.0, 0.3, 1.0], "uint8": [0, 1], "bool": [False, True]}


@pytest.mark.parametrize("target", list(TABLE_TARGETS))
def test_bernoulli_logits_and_targets_table(device, backend, dtype, target):
    # One row per (logit, target) pair, of 17 equal terms (past one AVX-512 vector of float32): the
    # reference gives the formula's limit with 0 log 0 = 0, so 0 where an infinite logit makes the
    # target certain and -inf where it makes it impossible; NaN logits give NaN. The gradient
    # x - sigmoid(a) is finite at every logit but NaN.
    pairs = list(itertools.product(TABLE_LOGITS, TABLE_TARGETS[target]))
    logits = torch.tensor([[a] * 17 for a, _ in pairs], dtype=dtype)
    x = torch.tensor([[t] * 17 for _, t in pairs]).to(dtype if target == "float" else getattr(torch, target))
    for (a, t), value in zip(pairs, R.bernoulli_log_prob(logits.double(), x).tolist()):
        if math.isinf(a):
            assert value == (0.0 if float(t) == float(a > 0) else -math.inf), f"reference at logit {a}, target {t}"
    check_against_reference(
        lambda logits, x: aevb_fast.bernoulli_log_prob(logits, x, backend=backend),
        R.bernoulli_log_prob,
        dict(logits=logits.to(device), x=x.to(device)),
        grad_names=("logits",),
    )


def test_bernoulli_nan_targets_are_refused_or_propagate(device, backend):
    # The cpu kernels check the targets' range in their pass; the others do not check, and a NaN
    # target gives NaN as in the reference, never a finite value that hides it.
    logits = torch.tensor([[-math.inf, 0.0, 2.0], [math.inf, 1e4, -3.0]], device=device)
    x = torch.tensor([[0.0, math.nan, 0.5], [1.0, 0.5, math.nan]], device=device)
    if backend == "cpu":
        with pytest.raises(ValueError, match=r"x holds values outside \[0, 1\] or NaN"):
            aevb_fast.bernoulli_log_prob(logits, x, backend=backend)
        return
    out = aevb_fast.bernoulli_log_prob(logits, x, backend=backend)
    assert torch.isnan(out).all() and torch.isnan(R.bernoulli_log_prob(logits, x)).all()


# (logvar, x - mean): the variance within float32, past exp(-logvar)'s range, past exp(-logvar/2)'s,
# and tiny; residuals 0, small and 1.
GAUSSIAN_CASES = list(itertools.product([80.0, -80.0, 100.0, -100.0, 200.0, -200.0, 1e4, -1e4, 0.0], [0.0, 1e-3, 1.0]))


def test_gaussian_extreme_logvar(device, backend):
    logvar_values, residuals = zip(*GAUSSIAN_CASES)
    x = torch.full((len(GAUSSIAN_CASES), 1), 0.5)
    mean = x + torch.tensor(residuals)[:, None]
    logvar = torch.tensor(logvar_values)[:, None]
    fused_in = [t.to(device).requires_grad_() for t in (mean, logvar)]
    out = aevb_fast.gaussian_log_prob(x.to(device), *fused_in, backend=backend)
    ref_in = [t.double().requires_grad_() for t in (mean, logvar)]
    ref = R.gaussian_log_prob(x.double(), *ref_in)
    _check(out, ref, "log N")
    for name, g, r in zip(("d/dmean", "d/dlogvar"), _grads(out, fused_in), _grads(ref, ref_in)):
        _check(g, r, name)


@pytest.mark.parametrize("estimator", ["analytic", "mc"])
def test_reparameterize_extreme_logvar(device, backend, estimator):
    values = [80.0, -80.0, 170.0, -200.0, -1e4, 0.0]
    mu = torch.tensor([[0.3] * len(values), [-1e4] * len(values)], device=device, requires_grad=True)
    logvar = torch.tensor([values] * 2, device=device, requires_grad=True)
    z, kl = aevb_fast.reparameterize_kl(mu, logvar, 2, estimator=estimator, seed=3, backend=backend)
    # The same eps through the float64 reference: z of mu = 0, logvar = 0 is eps itself.
    zeros = torch.zeros_like(mu)
    eps = aevb_fast.reparameterize(zeros, zeros, 2, seed=3, backend=backend).detach().cpu().double()
    ref_in = [t.detach().cpu().double().requires_grad_() for t in (mu, logvar)]
    ref_z = R.reparameterize(*ref_in, eps)
    ref_kl = R.log_ratio(ref_z, eps, ref_in[1]) if estimator == "mc" else R.gaussian_kl(*ref_in)
    _check(z, ref_z, "z")
    _check(kl, ref_kl, "kl")
    grads = torch.autograd.grad(z.sum() + kl.sum(), (mu, logvar))
    ref_grads = torch.autograd.grad(ref_z.sum() + ref_kl.sum(), ref_in)
    for name, g, r in zip(("d/dmu", "d/dlogvar"), grads, ref_grads):
        _check(g, r, name)
