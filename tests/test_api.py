"""The public API: the drop-in for the PyTorch VAE example, reductions, estimators A and B, beta,
IWAE, the modules, backend selection, and the errors bad input gets (each message checked)."""

import math
import re
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

import aevb_fast
from aevb_fast import reference as R
from aevb_fast.ops import backends

# The registry's likelihood names as messages list them.
NAMES = ", ".join(map(repr, aevb_fast.LIKELIHOODS))


def _rand(*shape, seed=0, scale=1.0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale


class _OpLog(TorchDispatchMode):
    """Records the ops that reach the dispatcher, with their tensor arguments' dtypes."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.calls.append((str(func), [a.dtype for a in args if isinstance(a, torch.Tensor)]))
        return func(*args, **(kwargs or {}))


# The PyTorch VAE example (pytorch/examples, vae/main.py), as its users have it.
def example_reparameterize(mu, logvar):
    std = torch.exp(0.5 * logvar)
    eps = torch.randn_like(std)
    return mu + eps * std


def example_loss_function(recon_x, x, mu, logvar):
    BCE = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction="sum")
    KLD = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return BCE + KLD


def test_drop_in_for_the_pytorch_vae_example(backend):
    mu, logvar = _rand(16, 20, seed=1), _rand(16, 20, seed=2, scale=0.3)
    z = aevb_fast.reparameterize(mu, logvar, backend=backend)
    assert z.shape == example_reparameterize(mu, logvar).shape == mu.shape
    logits = _rand(16, 784, seed=3, scale=2.0)
    data = torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(4))
    expected = example_loss_function(torch.sigmoid(logits), data, mu, logvar)
    loss = aevb_fast.vae_loss(logits, data, mu, logvar, reduction="sum", backend=backend)
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-3)


def test_reparameterize_shapes(backend):
    mu = torch.zeros(2, 3, 4)
    assert aevb_fast.reparameterize(mu, mu, backend=backend).shape == (2, 3, 4)
    assert aevb_fast.reparameterize(mu, mu, 5, backend=backend).shape == (5, 2, 3, 4)
    z, kl = aevb_fast.reparameterize_kl(mu, mu, 5, estimator="mc", backend=backend)
    assert z.shape == (5, 2, 3, 4) and kl.shape == (5, 2, 3) and kl.dtype == torch.float32
    z, kl = aevb_fast.reparameterize_kl(mu.bfloat16(), mu.bfloat16(), backend=backend)
    assert z.dtype == torch.bfloat16 and kl.shape == (2, 3) and kl.dtype == torch.float32
    z, kl = aevb_fast.reparameterize_kl(torch.zeros(4), torch.zeros(4), backend=backend)
    assert z.shape == (4,) and kl.shape == ()


@pytest.mark.parametrize("estimator", ["analytic", "mc"])
def test_slices_of_a_batch_draw_the_whole_batchs_noise(backend, estimator):
    # Data-parallel ranks hold slices of one batch: with batch_rows, slices [0, 2) and [2, 5) of a
    # batch of 5 (as [1, 2] and [3] leading shapes) get the z, KL terms and gradients one call on the
    # whole batch gets, for L = 3 samples.
    g = torch.Generator().manual_seed(0)
    mu, logvar = (
        torch.randn(5, 4, generator=g, dtype=torch.float64),
        torch.randn(5, 4, generator=g, dtype=torch.float64),
    )
    weights = torch.randn(3, 5, 4, generator=g, dtype=torch.float64)

    def run(m, v, w, **kwargs):
        m, v = m.clone().requires_grad_(), v.clone().requires_grad_()
        z, kl = aevb_fast.reparameterize_kl(m, v, 3, estimator=estimator, seed=9, backend=backend, **kwargs)
        torch.autograd.backward((z, kl), (w, torch.ones_like(kl)))
        return z.flatten(1, -2), kl.flatten(-len(m.shape[:-1])), m.grad.flatten(0, -2), v.grad.flatten(0, -2)

    whole = run(mu, logvar, weights)
    parts = [
        run(mu[:2].view(1, 2, 4), logvar[:2].view(1, 2, 4), weights[:, :2].reshape(3, 1, 2, 4), batch_rows=(0, 5)),
        run(mu[2:], logvar[2:], weights[:, 2:], batch_rows=(2, 5)),
    ]
    for name, a, b0, b1 in zip(("z", "kl", "grad mu", "grad logvar"), whole, *parts):
        torch.testing.assert_close(
            torch.cat([b0, b1], dim=-2 if name == "z" else (-1 if name == "kl" else 0)),
            a,
            rtol=1e-12,
            atol=1e-12,
            msg=name,
        )


def test_reductions(backend):
    logits, x = _rand(6, 9, seed=1), torch.rand(6, 9)
    rows = aevb_fast.bernoulli_log_prob(logits, x, backend=backend)
    assert rows.shape == (6,)
    torch.testing.assert_close(aevb_fast.bernoulli_log_prob(logits, x, "sum", backend=backend), rows.sum())
    torch.testing.assert_close(aevb_fast.bernoulli_log_prob(logits, x, "mean", backend=backend), rows.mean())
    mu, logvar = _rand(6, 3, seed=2), _rand(6, 3, seed=3)
    kl = aevb_fast.gaussian_kl(mu, logvar, backend=backend)
    torch.testing.assert_close(aevb_fast.gaussian_kl(mu, logvar, "mean", backend=backend), kl.mean())
    per_point = aevb_fast.vae_loss(logits, x, mu, logvar, "none", backend=backend)
    torch.testing.assert_close(per_point, -(rows - kl))
    torch.testing.assert_close(aevb_fast.vae_loss(logits, x, mu, logvar, backend=backend), per_point.mean())


def test_vae_loss_beta_and_gaussian_likelihood(backend):
    x, mu, logvar = torch.rand(5, 8), _rand(5, 3, seed=1), _rand(5, 3, seed=2)
    mean, dec_logvar = _rand(5, 8, seed=3), _rand(8, seed=4)
    loss = aevb_fast.vae_loss(
        (mean, dec_logvar), x, mu, logvar, "none", beta=0.25, likelihood="gaussian", backend=backend
    )
    expected = -(R.gaussian_log_prob(x, mean, dec_logvar.expand(5, 8)) - 0.25 * R.gaussian_kl(mu, logvar))
    torch.testing.assert_close(loss, expected)


class _Decoder(torch.nn.Module):
    def __init__(self, latent=3, data=10, gaussian=False):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.weight = torch.nn.Parameter(torch.randn(latent, data, generator=g))
        self.logvar = torch.nn.Parameter(torch.randn(data, generator=g) * 0.1) if gaussian else None

    def forward(self, z):
        out = torch.tanh(z) @ self.weight
        return (torch.sigmoid(out), self.logvar) if self.logvar is not None else out


@pytest.mark.parametrize(
    "estimator, iwae, beta",
    [("analytic", False, 1.0), ("analytic", False, 0.5), ("mc", False, 1.0), ("mc", False, 2.0), ("mc", True, 1.0)],
)
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_elbo_loss_against_the_reference(backend, estimator, iwae, beta, likelihood):
    decoder = _Decoder(gaussian=likelihood == "gaussian")
    x, mu, logvar = torch.rand(4, 10), _rand(4, 3, seed=1), _rand(4, 3, seed=2, scale=0.3)
    L = 5
    zeros = torch.zeros(4, 3)
    eps = aevb_fast.reparameterize(zeros, zeros, L, seed=8, backend=backend)
    z = R.reparameterize(mu, logvar, eps)
    out = decoder(z)
    log_px = R.gaussian_log_prob(x, out[0], out[1]) if likelihood == "gaussian" else R.bernoulli_log_prob(out, x)
    kl = R.log_ratio(z, eps, logvar) if estimator == "mc" else R.gaussian_kl(mu, logvar)
    expected = -(R.iwae_bound(log_px, kl) if iwae else R.elbo(log_px, kl, beta))
    loss = aevb_fast.elbo_loss(
        decoder,
        x,
        mu,
        logvar,
        n_samples=L,
        estimator=estimator,
        iwae=iwae,
        beta=beta,
        likelihood=likelihood,
        reduction="none",
        seed=8,
        backend=backend,
    )
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-4)
    module = aevb_fast.ELBOLoss(
        decoder,
        n_samples=L,
        estimator=estimator,
        iwae=iwae,
        beta=beta,
        likelihood=likelihood,
        reduction="sum",
        backend=backend,
    )
    torch.manual_seed(0)
    total = module(x, mu, logvar)
    torch.manual_seed(0)
    torch.testing.assert_close(
        total,
        aevb_fast.elbo_loss(
            decoder,
            x,
            mu,
            logvar,
            n_samples=L,
            estimator=estimator,
            iwae=iwae,
            beta=beta,
            likelihood=likelihood,
            reduction="sum",
            backend=backend,
        ),
    )
    total.backward()
    assert decoder.weight.grad is not None and torch.isfinite(decoder.weight.grad).all()


def test_iwae_with_one_sample_is_estimator_a(backend):
    decoder, x, mu, logvar = _Decoder(), torch.rand(6, 10), _rand(6, 3, seed=1), _rand(6, 3, seed=2)
    kwargs = dict(n_samples=1, estimator="mc", reduction="none", seed=4, backend=backend)
    torch.testing.assert_close(
        aevb_fast.elbo_loss(decoder, x, mu, logvar, iwae=True, **kwargs),
        aevb_fast.elbo_loss(decoder, x, mu, logvar, **kwargs),
    )


def test_modules_match_the_functions(backend):
    mu, logvar = _rand(4, 3, seed=1), _rand(4, 3, seed=2)
    torch.manual_seed(5)
    z = aevb_fast.Reparameterize(n_samples=2, backend=backend)(mu, logvar)
    torch.manual_seed(5)
    torch.testing.assert_close(z, aevb_fast.reparameterize(mu, logvar, 2, backend=backend))
    logits, x = _rand(4, 7, seed=3), torch.rand(4, 7)
    loss = aevb_fast.VAELoss(reduction="sum", beta=0.5, backend=backend)(logits, x, mu, logvar)
    torch.testing.assert_close(loss, aevb_fast.vae_loss(logits, x, mu, logvar, "sum", beta=0.5, backend=backend))
    assert "reduction='sum'" in repr(aevb_fast.VAELoss(reduction="sum"))


def test_integer_targets_are_read_without_a_float_copy():
    logits, x = _rand(8, 12, seed=1).requires_grad_(), torch.rand(8, 12) > 0.5
    expected = R.bernoulli_log_prob(logits, x.float())
    for targets in (x, x.to(torch.uint8)):
        with _OpLog() as log:
            out = aevb_fast.bernoulli_log_prob(logits, targets, backend="cpu")
        torch.testing.assert_close(out, expected)
        assert [c for c in log.calls if "copy" in c[0] or "_to_copy" in c[0]] == []
        assert ("aevb_fast.bernoulli_log_prob.default", [torch.float32, targets.dtype]) in log.calls


def test_backend_selection(monkeypatch):
    mu = torch.zeros(2, 3)
    monkeypatch.delenv(backends.ENV_VAR, raising=False)
    expected = "cpu" if "cpu" in backends.usable("cpu") else "torch"
    assert backends.resolve(None, mu.device) == expected
    monkeypatch.setenv(backends.ENV_VAR, "torch")
    assert backends.resolve(None, mu.device) == "torch"
    with _OpLog() as log:
        aevb_fast.gaussian_kl(mu, mu)
    assert not [c for c in log.calls if c[0].startswith("aevb_fast")]
    assert backends.resolve("auto", mu.device) == expected  # the argument wins over the environment
    monkeypatch.setenv(backends.ENV_VAR, "fast")
    with pytest.raises(
        ValueError, match=r"AEVB_FAST_BACKEND='fast' is not a backend; expected one of auto, triton, cuda, cpu, torch"
    ):
        aevb_fast.gaussian_kl(mu, mu)


def test_backend_lookup_is_a_constant_under_torch_compile(monkeypatch):
    # The first lookup may happen inside a compiled function: torch.compile takes its result as a
    # constant, worked out in eager Python, instead of tracing into the extension's CUDA device
    # query (which Dynamo cannot trace): a graph break there would fail fullgraph=True.
    reason = backends.unavailable_reason

    def untraceable(*args):
        torch._dynamo.graph_break()
        return reason(*args)

    monkeypatch.setattr(backends, "_USABLE", {})

    monkeypatch.setattr(backends, "_RESOLVED", {})
    monkeypatch.setattr(backends, "unavailable_reason", untraceable)
    compiled = torch.compile(lambda x: x * len(backends.usable("cuda")), backend="eager", fullgraph=True)
    torch.testing.assert_close(compiled(torch.ones(2)), torch.ones(2) * len(backends.usable("cuda")))


def test_auto_falls_back_to_torch_where_no_kernel_is_built(monkeypatch):
    monkeypatch.setattr(backends, "native", None)
    monkeypatch.setattr(backends, "load_error", "ImportError: no _C")
    monkeypatch.setattr(backends, "_USABLE", {})
    monkeypatch.setattr(backends, "_RESOLVED", {})
    assert backends.resolve("auto", torch.device("cpu")) == "torch"
    with pytest.raises(
        RuntimeError,
        match=r"backend='cpu' cannot serve cpu tensors here: the compiled extension aevb_fast._C is not built "
        r"\(ImportError: no _C\)",
    ):
        backends.resolve("cpu", torch.device("cpu"))


def test_auto_never_picks_the_triton_interpreter(monkeypatch):
    monkeypatch.setattr(backends, "native", None)
    monkeypatch.setattr(backends, "_USABLE", {})
    monkeypatch.setattr(backends, "_RESOLVED", {})
    assert backends.resolve("auto", torch.device("cpu")) == "torch"


def test_explicit_backend_that_cannot_serve_raises():
    with pytest.raises(
        RuntimeError,
        match=r"backend='cuda' cannot serve cpu tensors here: the cuda backend runs on CUDA tensors, not cpu tensors",
    ):
        aevb_fast.reparameterize(torch.zeros(2, 3), torch.zeros(2, 3), backend="cuda")
    with pytest.raises(
        RuntimeError,
        match=r"backend='triton' cannot serve meta tensors here: the triton backend runs on CUDA tensors "
        r"\(and CPU tensors under TRITON_INTERPRET=1\), not meta tensors",
    ):
        aevb_fast.reparameterize(torch.zeros(2, 3, device="meta"), torch.zeros(2, 3, device="meta"), backend="triton")
    with pytest.raises(
        RuntimeError,
        match=r"backend='cpu' cannot serve meta tensors here: the cpu backend runs on CPU tensors, not meta tensors",
    ):
        aevb_fast.gaussian_kl(torch.zeros(2, 3, device="meta"), torch.zeros(2, 3, device="meta"), backend="cpu")


ERRORS = [
    (
        lambda: aevb_fast.reparameterize(torch.zeros(2, 3), torch.zeros(2, 3), batch_rows=(4, 5)),
        ValueError,
        r"batch_rows=\(4, 5\) cannot hold these 2 rows: need 0 <= first and first \+ 2 <= total",
    ),
    (
        lambda: aevb_fast.reparameterize(torch.zeros(2, 3), torch.zeros(2, 3), batch_rows=4),
        TypeError,
        r"batch_rows must be a pair of ints \(first, total\), got 4",
    ),
    (
        lambda: aevb_fast.reparameterize(torch.zeros(2, 3), torch.zeros(2, 4)),
        ValueError,
        r"mu and logvar must have the same shape, got mu \[2, 3\] and logvar \[2, 4\]",
    ),
    (
        lambda: aevb_fast.reparameterize(torch.zeros(2, 3), torch.zeros(2, 3, device="meta")),
        ValueError,
        r"expected tensors on one device, got mu on cpu, logvar on meta",
    ),
    (
        lambda: aevb_fast.reparameterize(torch.zeros(2, 3, dtype=torch.int64), torch.zeros(2, 3)),
        TypeError,
        r"mu must be a floating tensor \(float32, float64, float16 or bfloat16\), got \[2, 3\] torch.int64 on cpu",
    ),
    (lambda: aevb_fast.reparameterize([0.0], torch.zeros(1)), TypeError, r"mu must be a torch.Tensor, got list"),
    (
        lambda: aevb_fast.reparameterize(torch.tensor(0.0), torch.tensor(0.0)),
        ValueError,
        r"mu and logvar must have a latent dimension \[..., Z\] with Z >= 1, got \[\]",
    ),
    (
        lambda: aevb_fast.gaussian_kl(torch.zeros(3, 0), torch.zeros(3, 0)),
        ValueError,
        r"mu and logvar must have a latent dimension \[..., Z\] with Z >= 1, got \[3, 0\]",
    ),
    (
        lambda: aevb_fast.reparameterize(torch.zeros(2), torch.zeros(2), 0),
        ValueError,
        r"n_samples must be a positive int or None, got 0",
    ),
    (
        lambda: aevb_fast.reparameterize(torch.zeros(2), torch.zeros(2), -3),
        ValueError,
        r"n_samples must be a positive int or None, got -3",
    ),
    (
        lambda: aevb_fast.reparameterize(torch.zeros(2), torch.zeros(2), True),
        ValueError,
        r"n_samples must be a positive int or None, got True",
    ),
    (
        lambda: aevb_fast.gaussian_kl(torch.zeros(2, 3, dtype=torch.bool), torch.zeros(2, 3)),
        TypeError,
        r"mu must be a floating tensor \(float32, float64, float16 or bfloat16\), got \[2, 3\] torch.bool on cpu",
    ),
    (
        lambda: aevb_fast.gaussian_log_prob(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 3, device="meta")),
        ValueError,
        r"expected tensors on one device, got x on cpu, mean on cpu, logvar on meta",
    ),
    (
        lambda: aevb_fast.bernoulli_log_prob(torch.zeros(2, 3), torch.zeros(2, 3), event_dims=True),
        ValueError,
        r"event_dims must be an int in \[1, 2\] for inputs of shape \[2, 3\], got True",
    ),
    (
        lambda: aevb_fast.reparameterize(torch.zeros(2), torch.zeros(2), seed=-1),
        ValueError,
        r"seed must lie in \[0, 2\*\*63\), got -1",
    ),
    (
        lambda: aevb_fast.reparameterize(torch.zeros(2), torch.zeros(2), seed=1.5),
        TypeError,
        r"seed must be an int or None, got float",
    ),
    (
        lambda: aevb_fast.reparameterize_kl(torch.zeros(2), torch.zeros(2), estimator="b"),
        ValueError,
        r"estimator='b' is not supported; expected one of 'analytic', 'mc'",
    ),
    (
        lambda: aevb_fast.reparameterize(torch.zeros(2), torch.zeros(2), backend="gpu"),
        ValueError,
        r"backend='gpu' is not a backend; expected one of auto, triton, cuda, cpu, torch",
    ),
    (
        lambda: aevb_fast.bernoulli_log_prob(torch.zeros(2, 3, dtype=torch.int32), torch.zeros(2, 3)),
        TypeError,
        r"logits must be a floating tensor \(float32, float64, float16 or bfloat16\), got \[2, 3\] torch.int32 on cpu",
    ),
    (
        lambda: aevb_fast.bernoulli_log_prob(torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.int64)),
        TypeError,
        r"x must be a floating, uint8 or bool tensor, got \[2, 3\] torch.int64 on cpu; "
        r"the floating dtypes are float32, "
        r"float64, float16 and bfloat16",
    ),
    (
        lambda: aevb_fast.bernoulli_log_prob(torch.zeros(2, 3), torch.zeros(2, 4)),
        ValueError,
        r"shapes do not broadcast: logits \[2, 3\], x \[2, 4\]",
    ),
    (
        lambda: aevb_fast.bernoulli_log_prob(torch.zeros(2, 3), torch.zeros(2, 3), reduction="avg"),
        ValueError,
        r"reduction='avg' is not supported; expected one of 'none', 'sum', 'mean'",
    ),
    (
        lambda: aevb_fast.bernoulli_log_prob(torch.zeros(2, 3), torch.zeros(2, 3), event_dims=3),
        ValueError,
        r"event_dims must be an int in \[1, 2\] for inputs of shape \[2, 3\], got 3",
    ),
    (
        lambda: aevb_fast.gaussian_log_prob(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(3, 3)),
        ValueError,
        r"shapes do not broadcast: mean \[2, 3\], logvar \[3, 3\], x \[2, 3\]",
    ),
    (
        lambda: aevb_fast.vae_loss(torch.zeros(3, 5), torch.zeros(3, 5), torch.zeros(2, 4), torch.zeros(2, 4)),
        ValueError,
        r"the decoder output \[3, 5\] must be \[2, D...\]: the batch dims of mu \[2\] followed by the data dims",
    ),
    (
        lambda: aevb_fast.vae_loss(
            torch.zeros(2, 5), torch.zeros(2, 5), torch.zeros(2, 4), torch.zeros(2, 4), likelihood="gaussian"
        ),
        TypeError,
        r"likelihood='gaussian' needs the decoder output as a \(mean, logvar\) pair, got Tensor",
    ),
    (
        lambda: aevb_fast.vae_loss(torch.zeros(2, 5), torch.zeros(2, 5), torch.zeros(2, 4), torch.zeros(2, 4), beta=-1),
        ValueError,
        r"beta must be a finite number >= 0, got -1",
    ),
    (
        lambda: aevb_fast.elbo_loss(lambda z: z, torch.zeros(2, 4), torch.zeros(2, 4), torch.zeros(2, 4), iwae=True),
        ValueError,
        r"iwae=True needs estimator='mc' \(per-sample log q\(z\|x\) - log p\(z\)\), got estimator='analytic'",
    ),
    (
        lambda: aevb_fast.elbo_loss(
            lambda z: z, torch.zeros(2, 4), torch.zeros(2, 4), torch.zeros(2, 4), iwae=True, estimator="mc", beta=0.5
        ),
        ValueError,
        r"iwae=True is the bound for beta=1, got beta=0.5",
    ),
    (
        lambda: aevb_fast.elbo_loss(
            lambda z: z, torch.zeros(2, 4), torch.zeros(2, 4), torch.zeros(2, 4), n_samples=None
        ),
        ValueError,
        r"n_samples must be a positive int, got None",
    ),
    (
        lambda: aevb_fast.ELBOLoss("decoder"),
        TypeError,
        r"decoder must be callable \(an nn.Module or function\), got str",
    ),
    (
        lambda: aevb_fast.VAELoss(likelihood="poisson"),
        ValueError,
        rf"likelihood='poisson' is not supported; expected one of {NAMES}",
    ),
    (lambda: aevb_fast.Reparameterize(backend="tpu"), ValueError, r"backend='tpu' is not a backend"),
]


def _unsupported_float_errors(dtype):
    """A floating dtype the kernels do not read (float8) as each kind of tensor argument of every public
    function: a TypeError naming the argument, before any kernel runs."""
    t, bias, e = torch.zeros(4, 4), torch.zeros(4), torch.zeros(4, 4, dtype=dtype)
    values = [
        ("mu", lambda: aevb_fast.reparameterize(e, t)),
        ("logvar", lambda: aevb_fast.reparameterize_kl(t, e)),
        ("mu", lambda: aevb_fast.gaussian_kl(e, t)),
        ("logits", lambda: aevb_fast.bernoulli_log_prob(e, t)),
        ("mean", lambda: aevb_fast.gaussian_log_prob(t, e, t)),
        ("logvar", lambda: aevb_fast.gaussian_log_prob(t, t, e)),
        ("h", lambda: aevb_fast.linear_bernoulli_log_prob(e, t, bias, t)),
        ("weight", lambda: aevb_fast.linear_bernoulli_log_prob(t, e, bias, t)),
        ("logvar_weight", lambda: aevb_fast.linear_gaussian_log_prob(t, t, bias, e, bias, t)),
        ("mu", lambda: aevb_fast.vae_loss(t, t, e, t)),
        ("decoder output", lambda: aevb_fast.vae_loss(e, t, t, t)),
        ("decoder mean", lambda: aevb_fast.vae_loss((e, t), t, t, t, likelihood="gaussian")),
        ("decoder output", lambda: aevb_fast.elbo_loss(lambda z: e, t, t, t)),
    ]
    targets = [
        lambda: aevb_fast.bernoulli_log_prob(t, e),
        lambda: aevb_fast.gaussian_log_prob(e, t, t),
        lambda: aevb_fast.linear_bernoulli_log_prob(t, t, bias, e),
        lambda: aevb_fast.linear_gaussian_log_prob(t, t, bias, t, bias, e),
        lambda: aevb_fast.vae_loss(t, e, t, t),
        lambda: aevb_fast.elbo_loss(lambda z: z, e, t, t),
    ]
    return [
        (
            call,
            TypeError,
            re.escape(
                f"{name} must be a floating tensor (float32, float64, float16 or bfloat16), got [4, 4] {dtype} on cpu"
            ),
        )
        for name, call in values
    ] + [
        (
            call,
            TypeError,
            re.escape(
                f"x must be a floating, uint8 or bool tensor, got [4, 4] {dtype} on cpu; the "
                "floating dtypes are float32, float64, float16 and bfloat16"
            ),
        )
        for call in targets
    ]


ERRORS += _unsupported_float_errors(torch.float8_e4m3fn) + _unsupported_float_errors(torch.float8_e5m2)


@pytest.mark.parametrize("call, error, message", ERRORS, ids=[str(i) for i in range(len(ERRORS))])
def test_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()


@pytest.mark.skipif("cpu" not in backends.usable("cpu"), reason="the cpu kernels are not built")
def test_bernoulli_targets_outside_the_unit_interval_or_nan_are_rejected_on_cpu():
    targets = [torch.full((2, 3), 2, dtype=torch.uint8), torch.full((2, 3), -0.5)]
    for dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        # NaN fails every comparison: one among valid targets, in a row's tail past a SIMD vector.
        x = torch.full((3, 37), 0.5, dtype=dtype)
        x[2, 35] = math.nan
        targets.append(x)
    for x in targets:
        logits = torch.zeros(x.shape, dtype=x.dtype if x.is_floating_point() else torch.float32)
        with pytest.raises(
            ValueError,
            match=r"x holds values outside \[0, 1\] or NaN; Bernoulli targets must be "
            r"probabilities in \[0, 1\]",
        ):
            aevb_fast.bernoulli_log_prob(logits, x, backend="cpu")


def test_empty_batch(backend):
    mu = torch.zeros(0, 4, requires_grad=True)
    z, kl = aevb_fast.reparameterize_kl(mu, mu, 3, backend=backend)
    assert z.shape == (3, 0, 4) and kl.shape == (0,)
    loss = aevb_fast.vae_loss(torch.zeros(0, 5, requires_grad=True), torch.zeros(0, 5), mu, mu, "sum", backend=backend)
    assert loss.item() == 0.0
    loss.backward()
    assert mu.grad.shape == (0, 4)
    assert math.isnan(aevb_fast.vae_loss(torch.zeros(0, 5), torch.zeros(0, 5), mu, mu, "mean", backend=backend).item())


def test_import_leaves_the_compiler_unloaded():
    """`import aevb_fast` does not import torch._dynamo (a second and 140 MB for every user): the
    backend lookup carries the marker torch.compiler.assume_constant_result would set, and that
    decorator still sets only this marker (else torch.compile would trace into the lookup)."""
    code = "import sys, aevb_fast; assert 'torch._dynamo' not in sys.modules, 'torch._dynamo imported'"
    subprocess.run([sys.executable, "-c", code], check=True)

    def probe():
        return 0

    torch.compiler.assume_constant_result(probe)
    assert probe.__dict__ == {"_dynamo_marked_constant": True}
    assert backends.usable._dynamo_marked_constant


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize(
    "dtypes",
    [(torch.float32, torch.float32), (torch.bfloat16, torch.float32), (torch.float64, torch.float32)],
    ids=["float32", "bf16-decoder", "f64-decoder"],
)
def test_vae_loss_node_is_the_composition_bit_for_bit(backend, likelihood, reduction, dtypes):
    """vae_loss's one autograd node runs the kernels and the arithmetic of the composition
    -(log p(x|z) - beta KL) of the public functions, and hands the kernels the row gradients
    autograd would: the same values and gradients, bit for bit, whatever the CPU."""
    decoder_dtype, latent_dtype = dtypes
    x = torch.rand(2, 3, 7)
    mu, logvar = _rand(2, 3, 4, seed=1).to(latent_dtype), _rand(2, 3, 4, seed=2, scale=0.5).to(latent_dtype)
    recon = (
        (_rand(2, 3, 7, seed=3).to(decoder_dtype),)
        if likelihood == "bernoulli"
        else (_rand(2, 3, 7, seed=3).to(decoder_dtype), _rand(2, 3, 7, seed=4, scale=0.3).to(decoder_dtype))
    )
    upstream = _rand(2, 3, seed=5) if reduction == "none" else torch.tensor(1.7)

    def run(loss_of):
        leaves = [t.detach().requires_grad_() for t in (mu, logvar, *recon)]
        loss = loss_of(leaves[0], leaves[1], leaves[2] if likelihood == "bernoulli" else tuple(leaves[2:]))
        loss.backward(upstream.to(loss.dtype))
        return [loss.detach(), *(t.grad for t in leaves)]

    def composition(mu, logvar, recon):
        log_px = (
            aevb_fast.bernoulli_log_prob(recon, x, backend=backend)
            if likelihood == "bernoulli"
            else aevb_fast.gaussian_log_prob(x, *recon, backend=backend)
        )
        return R.reduce(-(log_px - 0.3 * aevb_fast.gaussian_kl(mu, logvar, backend=backend)), reduction)

    fused = run(
        lambda mu, logvar, recon: aevb_fast.vae_loss(
            recon, x, mu, logvar, reduction, beta=0.3, likelihood=likelihood, backend=backend
        )
    )
    for got, expected in zip(fused, run(composition)):
        assert got.dtype == expected.dtype and torch.equal(got, expected)


def test_vae_loss_refuses_latents_and_decoder_output_on_two_devices():
    with pytest.raises(ValueError, match=r"expected tensors on one device, got decoder_output on cpu, mu on meta"):
        aevb_fast.vae_loss(
            torch.zeros(2, 5), torch.zeros(2, 5), torch.zeros(2, 4, device="meta"), torch.zeros(2, 4, device="meta")
        )


def test_vae_loss_gives_the_targets_their_gradient(backend):
    x = torch.rand(4, 6, requires_grad=True)
    logits, mu, logvar = _rand(4, 6, seed=1), _rand(4, 2, seed=2), _rand(4, 2, seed=3)
    aevb_fast.vae_loss(logits, x, mu, logvar, "sum", backend=backend).backward()
    torch.testing.assert_close(x.grad, -logits)  # d/dx of -(x a - softplus(a))
