"""Test helpers the test modules share: dtype tolerances, the (device, backend) pairs to test, one
check against the reference that serves every op, and the likelihood table."""

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

import aevb_fast
from aevb_fast.ops import backends

# Tolerances by the dtype of the value compared against the float64 reference. Half-precision
# values are one rounding of a float32 result (2^-8 bfloat16, 2^-11 float16, relative, plus the
# float32 error before it); float32 terms are a few ulps off and summed in double; float64 differs
# by libm ulps.
TOLERANCES = {
    torch.float64: dict(rtol=1e-10, atol=1e-10),
    torch.float32: dict(rtol=1e-5, atol=1e-5),
    torch.float16: dict(rtol=2e-3, atol=2e-3),
    torch.bfloat16: dict(rtol=1.6e-2, atol=1.6e-2),
}
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]


def backends_for(device: str) -> list[str]:
    """The kernel backends usable on `device`, then the reference."""
    return [*backends.usable(device), "torch"]


CPU_BACKENDS = backends_for("cpu")
DEVICE_BACKENDS = [(device, backend) for device in DEVICES for backend in backends_for(device)]
KERNEL_BACKENDS = [(device, backend) for device, backend in DEVICE_BACKENDS if backend != "torch"]


def assert_close(actual: torch.Tensor, expected: torch.Tensor, what: str = "", tolerance: dict | None = None) -> None:
    """actual (on any device) against a float64 reference rounded to actual's dtype (so a value past
    that dtype's range is its infinity on both sides), with the tolerance of actual's dtype (or the
    one given); NaN where the reference has NaN."""
    expected = expected.detach().cpu().to(actual.dtype) if actual.is_floating_point() else expected.detach().cpu()
    torch.testing.assert_close(
        actual.detach().cpu().double(),
        expected.double(),
        **(tolerance or TOLERANCES[actual.dtype]),
        equal_nan=True,
        msg=lambda m: f"{what}: {m}",
    )


def check_against_reference(
    fused, reference, inputs: dict, grad_names=(), seed: int = 0, tolerance: dict | None = None
) -> None:
    """Runs fused(**inputs) and reference(**inputs as float64 on the CPU), compares every output,
    then backpropagates the same random weights through both and compares the gradients of
    grad_names. Each comparison uses the tolerance of its tensor's dtype, or `tolerance` where given
    (for values made from intermediates rounded to the inputs' dtype, such as a matmul's)."""
    fused_in = {
        k: v.detach().clone().requires_grad_(k in grad_names) if isinstance(v, torch.Tensor) else v
        for k, v in inputs.items()
    }
    ref_in = {
        k: (v.detach().cpu().double() if v.is_floating_point() else v.detach().cpu()).requires_grad_(k in grad_names)
        if isinstance(v, torch.Tensor)
        else v
        for k, v in inputs.items()
    }
    out, expected = fused(**fused_in), reference(**ref_in)
    out = out if isinstance(out, tuple) else (out,)
    expected = expected if isinstance(expected, tuple) else (expected,)
    assert len(out) == len(expected)
    for i, (o, e) in enumerate(zip(out, expected)):
        assert o.shape == e.shape, f"output {i}: shape {tuple(o.shape)} != reference {tuple(e.shape)}"
        assert_close(o, e, f"output {i}", tolerance)
    if not grad_names:
        return
    generator = torch.Generator().manual_seed(seed)
    # Weights that each output's dtype holds exactly: a half-precision output's gradient is rounded
    # to its dtype, and the reference must see the same upstream gradient.
    weights = [torch.randn(o.shape, generator=generator, dtype=torch.float64).to(o.dtype).double() for o in out]
    loss = sum((o.double() * w.to(o.device)).sum() for o, w in zip(out, weights))
    ref_loss = sum((e * w).sum() for e, w in zip(expected, weights))
    grads = torch.autograd.grad(loss, [fused_in[k] for k in grad_names])
    ref_grads = torch.autograd.grad(ref_loss, [ref_in[k] for k in grad_names])
    for name, g, r in zip(grad_names, grads, ref_grads):
        assert g.dtype == fused_in[name].dtype, f"grad of {name}: dtype {g.dtype}"
        assert_close(g, r, f"grad of {name}", tolerance)


# The likelihood table: one entry per likelihood of aevb_fast.LIKELIHOODS, in the spirit of
# PyTorch's OpInfo, from which tests/test_likelihoods.py tests each one everywhere (a registry entry
# without a row here fails there).


@dataclass(frozen=True)
class LikelihoodInfo:
    """How the tests call one likelihood and draw inputs in its domain.

    call(values, x, **kwargs)           its public log-likelihood function
    head(h, layers, x, reduction, **kw) its public fused head, layers [(weight, bias)] per value
    values(shape, dtype, seed, device)  decoder outputs in its domain, a tuple in the order of params
    targets(shape, seed)                float64 targets in its domain (of data it models)
    int_targets                         whether uint8 / bool targets are data it models
    exponents                           per value, the decades (low, high) of magnitudes the property
                                        tests draw it from; and for the targets, None where they
                                        lie in [0, 1]
    x_grad                              whether the targets take a gradient (not discrete data's)
    tolerances                          per dtype, a tolerance of its own where the dtype's does not
                                        serve (a mixture's gradients go through responsibilities,
                                        exp of differences of log masses of tens of nats, which carry
                                        those logs' rounding: 3e-5 relative in float32, and the float64
                                        reference's autograd is off by up to 1e-8, against mpmath)

    values() draws each value in the registry entry's value_shape of the data shape (a mixture's
    K = 3 components last).
    """

    name: str
    call: Callable
    head: Callable
    values: Callable
    targets: Callable
    int_targets: bool
    exponents: tuple
    x_grad: bool = True
    tolerances: dict = field(default_factory=dict)

    def tolerance(self, dtype: torch.dtype) -> dict | None:
        """Its tolerance for results of `dtype`, or None where the dtype's own serves."""
        return self.tolerances.get(dtype)

    def grad_names(self, params) -> tuple[str, ...]:
        """The inputs whose gradients a test compares: the values, and x where it takes one."""
        return (*params, "x") if self.x_grad else tuple(params)


def normal(shape, dtype, seed, scale=1.0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=torch.float64) * scale).to(device, dtype)


def _uniform(shape, seed):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _location_scale(shape, dtype, seed, device="cpu"):
    """A location N(0, 1) and a log scale N(0, 0.25), the values of a location-scale likelihood."""
    return normal(shape, dtype, seed, 1.0, device), normal(shape, dtype, seed + 1, 0.5, device)


def _normal_targets(shape, seed):
    return normal(shape, torch.float64, seed)


MIXTURE_COMPONENTS = 3


def _mixture(shape, dtype, seed, device="cpu"):
    """A mixture's logits N(0, 1), means in [0, 1] and log scales in [-6, -2]: scales from a
    fraction of a grey level to 35 of them, the bins of the tails as the middle's."""
    shape = (*shape, MIXTURE_COMPONENTS)
    means = _uniform(shape, seed + 1).to(device, dtype)
    log_scales = (_uniform(shape, seed + 2) * 4 - 6).to(device, dtype)
    return normal(shape, dtype, seed, 1.0, device), means, log_scales


def _grey_levels(shape, seed):
    """8-bit grey levels v / 255, 0 and 255 among them."""
    v = torch.randint(0, 256, shape, generator=torch.Generator().manual_seed(seed))
    v.view(-1)[:2] = torch.tensor([0, 255])[: v.numel()]
    return v.double() / 255


# A location-scale likelihood's decades of magnitude: location, log scale, targets.
_LOCATION_SCALE_EXPONENTS = ((-1, 1), (-2, 0), (-1, 1))

LIKELIHOOD_INFOS = {
    info.name: info
    for info in (
        LikelihoodInfo(
            "bernoulli",
            call=lambda values, x, **kw: aevb_fast.bernoulli_log_prob(*values, x, **kw),
            head=lambda h, layers, x, reduction, **kw: aevb_fast.linear_bernoulli_log_prob(
                h, *layers[0], x, reduction, **kw
            ),
            values=lambda shape, dtype, seed, device="cpu": (normal(shape, dtype, seed, 3.0, device),),
            targets=_uniform,
            int_targets=True,
            exponents=((-2, 2), None),
        ),
        LikelihoodInfo(
            "continuous_bernoulli",
            call=lambda values, x, **kw: aevb_fast.continuous_bernoulli_log_prob(*values, x, **kw),
            head=lambda h, layers, x, reduction, **kw: aevb_fast.linear_continuous_bernoulli_log_prob(
                h, *layers[0], x, reduction, **kw
            ),
            values=lambda shape, dtype, seed, device="cpu": (normal(shape, dtype, seed, 3.0, device),),
            targets=_uniform,
            int_targets=True,
            exponents=((-2, 2), None),
        ),
        LikelihoodInfo(
            "discretized_logistic_mixture",
            call=lambda values, x, **kw: aevb_fast.discretized_logistic_mixture_log_prob(x, *values, **kw),
            head=lambda h, layers, x, reduction, chunk_rows=None, **kw: aevb_fast.LIKELIHOODS[
                "discretized_logistic_mixture"
            ].head(h, layers, x, reduction, **kw),
            values=_mixture,
            targets=_grey_levels,
            int_targets=False,
            exponents=((-1, 1), (-2, 0), (-1, 0), None),
            x_grad=False,
            tolerances={torch.float64: dict(rtol=1e-8, atol=1e-8), torch.float32: dict(rtol=1e-4, atol=1e-4)},
        ),
        LikelihoodInfo(
            "gaussian",
            call=lambda values, x, **kw: aevb_fast.gaussian_log_prob(x, *values, **kw),
            head=lambda h, layers, x, reduction, **kw: aevb_fast.linear_gaussian_log_prob(
                h, *layers[0], *layers[1], x, reduction, mean_activation="sigmoid", **kw
            ),
            values=_location_scale,
            targets=_normal_targets,
            int_targets=True,
            exponents=_LOCATION_SCALE_EXPONENTS,
        ),
        LikelihoodInfo(
            "laplace",
            call=lambda values, x, **kw: aevb_fast.laplace_log_prob(x, *values, **kw),
            head=lambda h, layers, x, reduction, **kw: aevb_fast.linear_laplace_log_prob(
                h, *layers[0], *layers[1], x, reduction, loc_activation="sigmoid", **kw
            ),
            values=_location_scale,
            targets=_normal_targets,
            int_targets=True,
            exponents=_LOCATION_SCALE_EXPONENTS,
        ),
    )
}
