"""Every backend at the extremes of its inputs, against the float64 reference rounded to float32.
Where the exact value lies beyond float32's range the result is the infinity of its sign; a finite
input never gives NaN. Each likelihood's extreme finite values and their gradients are tested from
the table in tests/test_likelihoods.py; here, what belongs to one op:
- the Bernoulli likelihood over the table of logits (+-inf, large, 0, NaN) by targets (0, 1 and
  between; float, uint8 and bool) in every dtype: the limit of the formula with 0 log 0 = 0;
- reparameterize and the KL at logvar of +-80 and past float32's exp limit. Limits (documented in
  aevb_fast.functional): sigma = exp(logvar / 2) overflows float32 past logvar = 177, so z is
  checked up to logvar = 170."""

import itertools
import math

import pytest
import torch
from helpers import check_against_reference

import aevb_fast
from aevb_fast import reference as R

# The Triton interpreter computes with numpy, which warns on overflow and on the branch a select drops.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def _expected(value: torch.Tensor) -> torch.Tensor:
    """A float64 reference value as float32 represents it: beyond the range, the signed infinity."""
    return value.detach().to(torch.float32)


def _check(actual, reference, what):
    actual, expected = actual.detach().cpu(), _expected(reference)
    assert not actual.isnan().any(), f"{what}: NaN from finite inputs: {actual}"
    torch.testing.assert_close(actual, expected, rtol=2e-5, atol=1e-6, msg=lambda m: f"{what}: {m}")


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
