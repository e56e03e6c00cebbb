"""The public functional API: the pieces of the VAE objective (Kingma & Welling 2013), each one
fused kernel call on tensors of any leading shape.

Conventions
- mu, logvar [..., Z]: one Gaussian q(z|x) per datapoint; the leading dims are the batch.
- Samples: n_samples=None draws one sample without a sample dimension (z [..., Z], a drop-in for
  the usual `mu + exp(logvar/2) * randn_like(mu)`); n_samples=L gives z [L, ..., Z].
- A log-likelihood sums over the last `event_dims` dimensions of its inputs; targets x broadcast
  against the values (x [B, D] serves logits [L, B, D] without a copy).
- reduction: "none" keeps one value per datapoint; "sum" and "mean" reduce over datapoints.
- dtypes: float32, float64, float16, bfloat16; math in float32 (float64 for float64); per-datapoint
  values in float32 (float64); z and gradients in the input dtype. x may be float, uint8 or bool.
- backend: "auto" (default, or AEVB_FAST_BACKEND), "cpu", "triton", "cuda" or "torch" (the plain
  PyTorch reference, aevb_fast.reference). auto uses the fused kernels where built and falls back
  to torch quietly; an explicit backend that cannot run raises RuntimeError.
- Noise: each call draws a fresh 63-bit seed from torch's default CPU generator, so
  torch.manual_seed makes runs reproducible; seed= pins it. The kernels regenerate eps in the
  backward pass instead of storing it. The torch backend draws with torch.randn instead.
  batch_rows=(first, total) says the datapoints are rows first.. of a batch of `total` rows (one
  data-parallel rank's slice of the global batch, its rows flattened): with one seed, the ranks
  then draw together the noise one process would for the whole batch.
- Targets of the Bernoulli likelihood must lie in [0, 1]. The cpu kernels check this in the same
  pass and raise ValueError (for NaN too); the torch backend and GPU kernels do not check (it would
  cost a pass or a device sync).
- Extremes (tests/test_extremes.py): logits of any finite size (softplus in stable form); at
  +-inf the Bernoulli likelihood is the formula's limit (0 log 0 = 0): 0 where the logit makes the
  target certain (+inf with x = 1, -inf with x = 0), -inf where it makes it impossible. The
  Gaussian likelihood goes through the standardized residual (x - mean) exp(-logvar / 2), so
  x == mean stays finite for every finite logvar and a result is infinite only where its exact
  value lies beyond float32's range, as its signed infinity. reparameterize's sigma = exp(logvar / 2)
  overflows float32 past logvar = 177: z is then +-inf. A finite input never gives NaN within these
  limits; NaN and +-inf inputs propagate as in the reference.
- Bad input raises before any kernel runs: TypeError for a non-tensor or a wrong dtype (values
  other than float32, float64, float16 or bfloat16, such as integers or float8; targets other than
  those, uint8 or bool), ValueError for shapes that do not match or broadcast, tensors on different
  devices, n_samples < 1, unknown reduction / estimator / backend names, and the other rules each
  function states.
"""

import array
import math
from collections.abc import Callable, Sequence

import torch

from . import reference
from ._checks import check_backend, check_beta, check_choice, check_chunk_rows, check_iwae, check_n_samples
from .ops import backends
from .ops.bernoulli import bernoulli_log_prob as _bernoulli_op
from .ops.gaussian import gaussian_log_prob as _gaussian_op
from .ops.linear_likelihood import chunk_rows_for
from .ops.linear_likelihood import linear_bernoulli_log_prob as _linear_bernoulli_op
from .ops.linear_likelihood import linear_gaussian_log_prob as _linear_gaussian_op
from .ops.reparameterize import kl_only_seed
from .ops.reparameterize import reparameterize as _reparameterize_op
from .ops.vae_loss import vae_loss as _vae_loss_op

ESTIMATORS = ("analytic", "mc")
MEAN_ACTIVATIONS = ("identity", "sigmoid")
LIKELIHOODS = ("bernoulli", "gaussian")
SEED_LIMIT = 2**63
_HALF = (torch.float16, torch.bfloat16)
_WIDE = (torch.float32, torch.float64)
# The dtypes the kernels read: any other (float8, ...) is refused before it reaches one.
_VALUE_DTYPES = (torch.float32, torch.float64, *_HALF)
_TARGET_DTYPES = (*_VALUE_DTYPES, torch.uint8, torch.bool)


def backend_for(device: torch.device | str, backend: str | None = None) -> str:
    """The backend that serves calls on tensors of `device` for the backend= argument `backend`
    (None: AEVB_FAST_BACKEND, else auto): "cpu", "cuda", "triton" or "torch". ValueError if the name
    is not a backend or cannot serve that device here, saying why."""
    check_backend(backend, torch.device(device))
    return backends.resolve(backend, torch.device(device))


def _describe(t: torch.Tensor) -> str:
    return f"{list(t.shape)} {t.dtype} on {t.device}"


def _check_values(name: str, t) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in _VALUE_DTYPES:
        raise TypeError(f"{name} must be a floating tensor (float32, float64, float16 or bfloat16), got {_describe(t)}")


def _check_target(name: str, t) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in _TARGET_DTYPES:
        raise TypeError(f"{name} must be a floating, uint8 or bool tensor, got {_describe(t)}; the floating dtypes "
                        "are float32, float64, float16 and bfloat16")


def _check_devices(**tensors: torch.Tensor) -> None:
    first, *rest = tensors.values()
    if any(t.device != first.device for t in rest):
        raise ValueError("expected tensors on one device, got " + ", ".join(f"{n} on {t.device}" for n, t in tensors.items()))


def _gaussian_params(mu, logvar) -> tuple[torch.Tensor, torch.Tensor]:
    """mu and logvar checked and promoted to their common dtype."""
    _check_values("mu", mu)
    _check_values("logvar", logvar)
    _check_devices(mu=mu, logvar=logvar)
    if mu.shape != logvar.shape:
        raise ValueError(f"mu and logvar must have the same shape, got mu {list(mu.shape)} and logvar {list(logvar.shape)}")
    if mu.dim() == 0 or mu.shape[-1] == 0:
        raise ValueError(f"mu and logvar must have a latent dimension [..., Z] with Z >= 1, got {list(mu.shape)}")
    if mu.dtype == logvar.dtype:
        return mu, logvar
    dtype = torch.promote_types(mu.dtype, logvar.dtype)
    return mu.to(dtype), logvar.to(dtype)


def _check_seed(seed) -> None:
    if seed is None:
        return
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int or None, got {type(seed).__name__}")
    if not 0 <= seed < SEED_LIMIT:
        raise ValueError(f"seed must lie in [0, 2**63), got {seed}")


def _batch_rows(batch_rows, rows: int) -> tuple[int, int]:
    """(first, total) checked against the call's rows; (0, rows) for None."""
    if batch_rows is None:
        return 0, rows
    if (not isinstance(batch_rows, (tuple, list)) or len(batch_rows) != 2
            or any(isinstance(v, bool) or not isinstance(v, int) for v in batch_rows)):
        raise TypeError(f"batch_rows must be a pair of ints (first, total), got {batch_rows!r}")
    first, total = batch_rows
    if not (0 <= first and first + rows <= total):
        raise ValueError(f"batch_rows=({first}, {total}) cannot hold these {rows} rows: need 0 <= first and "
                         f"first + {rows} <= total")
    return first, total


def _seed_tensor(seed: int | None, device: torch.device, first: int, total: int) -> torch.Tensor:
    """The kernel's (key, first, total) as an int64 tensor [3] on `device`: a tensor, not Python
    ints, so torch.compile neither recompiles per seed nor bakes one in. The key is drawn on the CPU
    generator: no sync."""
    if torch.compiler.is_compiling():
        key = torch.randint(SEED_LIMIT - 1, (1,), dtype=torch.int64) if seed is None else torch.tensor([seed])
        t = torch.cat([key, torch.tensor([first, total])])
    else:  # the same draw; the tensor made over a Python buffer, 2 us less than torch.tensor on every call
        key = int(torch.randint(SEED_LIMIT - 1, (1,), dtype=torch.int64)) if seed is None else seed
        t = torch.frombuffer(array.array("q", (key, first, total)), dtype=torch.int64)
    return t if device.type == "cpu" else t.to(device, non_blocking=True)


def _flat(t: torch.Tensor, shape) -> torch.Tensor:
    """t viewed as `shape` (one -1 allowed), or t itself where it has that shape already: a view of a
    tensor that takes gradients is one more autograd node, which costs microseconds forward and back."""
    if t.dim() == len(shape) and all(s == -1 or s == d for s, d in zip(shape, t.shape)):
        return t
    return t.view(shape) if -1 not in shape else t.reshape(shape)


def _math_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in _HALF else dtype


# Sampling and the KL term.

def reparameterize_kl(mu: torch.Tensor, logvar: torch.Tensor, n_samples: int | None = None, *,
                      estimator: str = "analytic", seed: int | None = None, backend: str | None = None,
                      batch_rows: tuple[int, int] | None = None):
    """z = mu + exp(logvar / 2) * eps, eps ~ N(0, I) (eq. 4), and the KL term of the bound, in one pass.

    Returns (z, kl). z is [..., Z] (n_samples=None) or [L, ..., Z]. With estimator="analytic"
    (estimator B, eq. 7) kl is KL(q(z|x) || N(0, I)) per datapoint [...]; with "mc" (estimator A,
    eq. 6) it is log q(z_l|x) - log p(z_l) per sample, [...] or [L, ...]. batch_rows: see Noise in
    the module's docstring.
    """
    mu, logvar = _gaussian_params(mu, logvar)
    check_n_samples(n_samples)
    check_choice("estimator", estimator, ESTIMATORS)
    _check_seed(seed)
    mc = estimator == "mc"
    batch, Z = mu.shape[:-1], mu.shape[-1]
    first, total = _batch_rows(batch_rows, math.prod(batch))
    name = backends.resolve(backend, mu.device)
    if name != "torch":
        # The op takes mu [..., Z] and n_samples=None as they are: z comes in the caller's shape.
        return _reparameterize_op.prechecked(mu, logvar, _seed_tensor(seed, mu.device, first, total), n_samples, mc,
                                             name)
    n = 1 if n_samples is None else n_samples
    z, kl = _reparameterize_torch(_flat(mu, (-1, Z)), _flat(logvar, (-1, Z)), n, mc, seed, first, total)
    # Without a sample dimension, views rather than z[0]: the backward of indexing would build a
    # zero-filled [1, ..., Z] gradient and copy into it.
    samples = () if n_samples is None else (n,)
    return _flat(z, (*samples, *batch, Z)), _flat(kl, (*samples, *batch) if mc else batch)


def _reparameterize_torch(mu, logvar, n, mc, seed, first, total):
    """The reference on rows [B, Z]: the whole batch's noise is drawn and this slice's rows taken."""
    m, v = mu.to(_math_dtype(mu.dtype)), logvar.to(_math_dtype(mu.dtype))
    generator = None if seed is None else torch.Generator(mu.device).manual_seed(seed)
    eps = torch.randn((n, total, mu.shape[-1]), dtype=m.dtype, device=mu.device, generator=generator)
    eps = eps[:, first:first + mu.shape[0]]
    z = reference.reparameterize(m, v, eps)
    kl = reference.log_ratio(z, eps, v) if mc else reference.gaussian_kl(m, v)
    return z.to(mu.dtype), kl


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, n_samples: int | None = None, *,
                   seed: int | None = None, backend: str | None = None,
                   batch_rows: tuple[int, int] | None = None) -> torch.Tensor:
    """z = mu + exp(logvar / 2) * eps (eq. 4): [..., Z], or [L, ..., Z] with n_samples=L.

    Drop-in for the PyTorch VAE example's `reparameterize(mu, logvar)`."""
    return reparameterize_kl(mu, logvar, n_samples, seed=seed, backend=backend, batch_rows=batch_rows)[0]


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor, reduction: str = "none", *,
                backend: str | None = None) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) = -1/2 sum_j (1 + logvar - mu^2 - exp(logvar)) (Appendix B),
    per datapoint [...] or reduced."""
    mu, logvar = _gaussian_params(mu, logvar)
    check_choice("reduction", reduction, reference.REDUCTIONS)
    name = backends.resolve(backend, mu.device)
    if name == "torch":
        kl = reference.gaussian_kl(mu.to(_math_dtype(mu.dtype)), logvar.to(_math_dtype(mu.dtype)))
    else:
        kl = _analytic_kl(mu, logvar, name)
    return reference.reduce(kl, reduction)


def _analytic_kl(mu, logvar, backend: str) -> torch.Tensor:
    """KL per datapoint [...] from the reparameterize op with zero samples, which computes the
    analytic KL alone (its seed unused)."""
    return _reparameterize_op.prechecked(mu, logvar, kl_only_seed(mu, logvar), 0, False, backend)[1]


# Likelihoods.

def _rows(values: dict[str, torch.Tensor], x: torch.Tensor, event_dims):
    """Broadcasts values and targets, flattens values to [N, D] and x to [Nx, D] with Nx dividing N
    (x keeps its own rows when its shape is a suffix of the values'), and returns the batch shape."""
    shapes = [v.shape for v in values.values()]
    if all(s == shapes[0] for s in shapes) and x.shape == shapes[0][len(shapes[0]) - x.dim():]:
        shape = shapes[0]  # the common case, without torch.broadcast_shapes' per-call cost
    else:
        try:
            shape = torch.broadcast_shapes(x.shape, *shapes)
        except RuntimeError:
            given = ", ".join(f"{n} {list(v.shape)}" for n, v in {**values, "x": x}.items())
            raise ValueError(f"shapes do not broadcast: {given}") from None
    if isinstance(event_dims, bool) or not isinstance(event_dims, int) or not 1 <= event_dims <= len(shape):
        raise ValueError(f"event_dims must be an int in [1, {len(shape)}] for inputs of shape {list(shape)}, "
                         f"got {event_dims!r}")
    batch, event = shape[:-event_dims], shape[-event_dims:]
    if len(shape) == 2 and event_dims == 1 and x.shape == shape and all(v.shape == shape for v in values.values()):
        return list(values.values()), x, batch  # [N, D] already: no views (autograd nodes) to make
    N, D = math.prod(batch), math.prod(event)
    if not (x.dim() >= event_dims and tuple(x.shape) == tuple(shape[len(shape) - x.dim():])):
        x = x.expand(shape)
    flat = [(v if v.shape == shape else v.expand(shape)).reshape(N, D) for v in values.values()]
    return flat, x.reshape(math.prod(x.shape[:-event_dims]), D), batch


def _expand_rows(x: torch.Tensor, n: int) -> torch.Tensor:
    """x [Nx, D] repeated to [n, D], row i being x[i % Nx]: the torch backend's view of repeated targets."""
    return x if x.shape[0] == n else x.expand(n // x.shape[0], *x.shape).reshape(n, x.shape[1])


def bernoulli_log_prob(logits: torch.Tensor, x: torch.Tensor, reduction: str = "none", *,
                       event_dims: int = 1, backend: str | None = None) -> torch.Tensor:
    """log p(x|z) = sum_i x_i log y_i + (1 - x_i) log(1 - y_i), y = sigmoid(logits) (the paper's
    Bernoulli decoder), summed over the last event_dims dims: per datapoint [...] or reduced.

    logits [..., D]: the decoder's pre-sigmoid output. x: targets in [0, 1] (grey levels or 0/1),
    float, uint8 or bool, broadcast against logits."""
    check_choice("reduction", reduction, reference.REDUCTIONS)
    values, x, batch = _bernoulli_inputs((logits,), x, event_dims)
    log_prob = _bernoulli_rows(values, x, backends.resolve(backend, logits.device))
    return reference.reduce(_flat(log_prob, batch), reduction)


def _bernoulli_inputs(values, x, event_dims):
    """(logits,) and x checked and flattened by _rows."""
    _check_values("logits", values[0])
    _check_target("x", x)
    _check_devices(logits=values[0], x=x)
    return _rows({"logits": values[0]}, x, event_dims)


def _bernoulli_rows(values, x, backend: str) -> torch.Tensor:
    """log p(x|z) [N] for flattened logits [N, D] and x [Nx, D]."""
    (a,) = values
    if backend != "torch":
        return _bernoulli_op.prechecked(a, x, backend)
    # x in the math dtype before its rows repeat: the repeats' gradients then sum in it.
    md = _math_dtype(a.dtype)
    return reference.bernoulli_log_prob(a.to(md), _expand_rows(x.to(md), a.shape[0]))


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor, reduction: str = "none", *,
                      event_dims: int = 1, backend: str | None = None) -> torch.Tensor:
    """log N(x; mean, exp(logvar) I) = -1/2 sum_i (log 2pi + logvar_i + (x_i - mean_i)^2 exp(-logvar_i))
    (the paper's Gaussian decoder), summed over the last event_dims dims: per datapoint [...] or reduced.

    mean and logvar broadcast against each other (a shared logvar [D] works) and against x."""
    check_choice("reduction", reduction, reference.REDUCTIONS)
    values, x, batch = _gaussian_inputs((mean, logvar), x, event_dims)
    log_prob = _gaussian_rows(values, x, backends.resolve(backend, mean.device))
    return reference.reduce(_flat(log_prob, batch), reduction)


def _gaussian_inputs(values, x, event_dims):
    """(mean, logvar) and x checked, promoted to one dtype and flattened by _rows."""
    mean, logvar = values
    _check_target("x", x)
    _check_values("mean", mean)
    _check_values("logvar", logvar)
    _check_devices(x=x, mean=mean, logvar=logvar)
    if mean.dtype != logvar.dtype:
        dtype = torch.promote_types(mean.dtype, logvar.dtype)
        mean, logvar = mean.to(dtype), logvar.to(dtype)
    return _rows({"mean": mean, "logvar": logvar}, x, event_dims)


def _gaussian_rows(values, x, backend: str) -> torch.Tensor:
    """log p(x|z) [N] for flattened mean and logvar [N, D] and x [Nx, D]."""
    m, s = values
    if backend != "torch":
        return _gaussian_op.prechecked(x, m, s, backend)
    md = _math_dtype(m.dtype)
    return reference.gaussian_log_prob(_expand_rows(x.to(md), m.shape[0]), m.to(md), s.to(md))


# Per likelihood: its inputs' check and flattening, and its per-row log-likelihood.
_LIKELIHOOD_ROWS = {"bernoulli": (_bernoulli_inputs, _bernoulli_rows), "gaussian": (_gaussian_inputs, _gaussian_rows)}


# The decoder's output layer and its likelihood in one op.

def _linear_head(op, h, params: dict, x, options, reduction, chunk_rows, backend, reference_values, reference_fn,
                 fused_fn):
    """Checks a fused head's arguments and runs it: the fused op for a kernel backend (the output
    layer and likelihood chunked over rows), or, where one chunk would hold every row of float32 or
    float64 inputs, fused_fn(reference_values(h, params), x, reduction, backend), the plain Linear
    outputs and the fused likelihood; else (backend torch) reference_fn(reference_values(h,
    params), x). Returns log p(x|z) per datapoint [...] or reduced."""
    _check_values("h", h)
    given = {name: p for name, p in params.items() if p is not None}
    for name, p in given.items():
        _check_values(name, p)
    _check_target("x", x)
    _check_devices(h=h, **given, x=x)
    check_choice("reduction", reduction, reference.REDUCTIONS)
    check_chunk_rows(chunk_rows)
    weights = [p for name, p in given.items() if name.endswith("weight")]
    D, H = weights[0].shape if weights[0].dim() == 2 else (None, None)
    for name, p in given.items():
        if p.shape != ((D, H) if name.endswith("weight") else (D,)):
            raise ValueError(f"{name} must be [{D}, {H}] (weights) or [{D}] (biases) like the first weight, "
                             f"got {list(p.shape)}")
    if h.dim() == 0 or h.shape[-1] != H:
        raise ValueError(f"h must be [..., {H}] for weights [{D}, {H}], got {list(h.shape)}")
    batch, x_batch = tuple(h.shape[:-1]), tuple(x.shape[:-1])
    if x.dim() == 0 or x.shape[-1] != D or len(x_batch) > len(batch) or x_batch != batch[len(batch) - len(x_batch):]:
        raise ValueError(f"x must be [..., {D}] with its leading dims the last ones of h's {list(batch)} (targets "
                         f"shared by the samples of h), got {list(x.shape)}")
    if x.requires_grad:
        raise ValueError("x requires grad, but the fused head gives no gradient for the targets: detach it, or use "
                         "a Linear layer and the likelihood function")
    if torch.is_autocast_enabled(h.device.type) and h.dtype != torch.float64:
        # As nn.Linear under autocast: the matmuls in the autocast dtype (float64 left alone).
        dtype = torch.get_autocast_dtype(h.device.type)
        h, params = h.to(dtype), {name: p if p is None else p.to(dtype) for name, p in params.items()}
    else:
        dtypes = {h.dtype, *(p.dtype for p in given.values())}
        if len(dtypes) > 1:
            raise TypeError("h, weights and biases must share one dtype (as for nn.Linear), got "
                            + ", ".join(f"{name} {t.dtype}" for name, t in {"h": h, **given}.items()))
    name = backends.resolve(backend, h.device)
    if name == "torch":
        values = [v.to(_math_dtype(h.dtype)) for v in reference_values(h, params)]
        return reference.reduce(reference_fn(*values, x), reduction)
    N = math.prod(batch)
    rows = chunk_rows if chunk_rows is not None else chunk_rows_for(N, H, D * len(weights))
    if 0 < N <= rows and h.dtype in _WIDE:
        # One chunk makes the whole output at once, so chunking saves no memory here; the Linear
        # and the likelihood op are fewer calls (forward + backward, 2-core CPU: one element 72
        # against 170 us, [100, 500] -> 784 1.15 against 1.40 ms). Half precision stays in the
        # op, whose gradient sums are float32.
        return fused_fn(reference_values(h, params), x, reduction, name)
    with_grads = reduction != "none" and torch.is_grad_enabled() and any(
        t.requires_grad for t in (h, *given.values()))
    out = op(h.reshape(N, H), *params.values(), x.reshape(-1, D), *options, reduction != "none", with_grads, rows,
             name)[0]
    if reduction == "none":
        return out.view(batch)
    return out if reduction == "sum" else out / N


def linear_bernoulli_log_prob(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, x: torch.Tensor,
                              reduction: str = "none", *, chunk_rows: int | None = None,
                              backend: str | None = None) -> torch.Tensor:
    """bernoulli_log_prob(h @ weight.T + bias, x, reduction) with the decoder's output layer fused in:
    log p(x|z) = sum_d x_d a_d - softplus(a_d), a = W h + b (the paper's Bernoulli decoder), per
    datapoint [...] or reduced, without the [..., D] logits ever in memory in full.

    h [..., H]: the decoder's last hidden layer (e.g. [L, B, H] for L samples); weight [D, H], bias [D]
    or None, as nn.Linear's; x [..., D]: targets in [0, 1], float, uint8 or bool, their leading dims
    the last ones of h's (x [B, D] serves h [L, B, H]); x takes no gradient.

    The kernel backends walk the rows in chunks of chunk_rows (default: chunks whose logits hold up
    to four times as many elements as h, at least 2^22): each chunk's logits, likelihood and
    gradients are made and dropped before the next. With reduction "sum" or "mean" the gradients of
    h, W and b are made in the forward pass and the backward only scales them; with "none" the
    backward walks the chunks again (each row's gradient weights W's differently). Where one chunk
    holds every row of float32 or float64 inputs, which chunking would not make smaller, the kernel
    backends run nn.functional.linear and the fused bernoulli_log_prob instead: fewer calls for the
    same memory. Under autocast the matmuls run in the autocast dtype, as nn.Linear's do; the
    likelihood's math stays float32. Backend "torch" runs nn.functional.linear and the reference
    likelihood."""
    return _linear_head(
        _linear_bernoulli_op, h, {"weight": weight, "bias": bias}, x, (), reduction, chunk_rows, backend,
        lambda h, p: (torch.nn.functional.linear(h, p["weight"], p["bias"]),), reference.bernoulli_log_prob,
        lambda values, x, reduction, name: bernoulli_log_prob(*values, x, reduction, backend=name))


def linear_gaussian_log_prob(h: torch.Tensor, mean_weight: torch.Tensor, mean_bias: torch.Tensor | None,
                             logvar_weight: torch.Tensor, logvar_bias: torch.Tensor | None, x: torch.Tensor,
                             reduction: str = "none", *, mean_activation: str = "identity",
                             chunk_rows: int | None = None, backend: str | None = None) -> torch.Tensor:
    """gaussian_log_prob(x, act(h @ mean_weight.T + mean_bias), h @ logvar_weight.T + logvar_bias,
    reduction) with the decoder's two output layers fused in (the paper's Gaussian decoder, whose
    mean_activation is "sigmoid"; "identity" leaves the mean linear), per datapoint [...] or reduced,
    without the [..., D] means and log-variances ever in memory in full.

    Shapes and chunking as linear_bernoulli_log_prob, with two (weight [D, H], bias [D] or None) pairs."""
    check_choice("mean_activation", mean_activation, MEAN_ACTIVATIONS)
    sigmoid = mean_activation == "sigmoid"

    def values(h, p):
        mean = torch.nn.functional.linear(h, p["mean_weight"], p["mean_bias"])
        return torch.sigmoid(mean) if sigmoid else mean, torch.nn.functional.linear(h, p["logvar_weight"],
                                                                                    p["logvar_bias"])

    return _linear_head(
        _linear_gaussian_op, h, {"mean_weight": mean_weight, "mean_bias": mean_bias, "logvar_weight": logvar_weight,
                                 "logvar_bias": logvar_bias}, x, (sigmoid,), reduction, chunk_rows, backend, values,
        lambda mean, logvar, x: reference.gaussian_log_prob(x, mean, logvar),
        lambda values, x, reduction, name: gaussian_log_prob(x, *values, reduction, backend=name))


def _likelihood_inputs(likelihood: str, recon, x: torch.Tensor, batch: torch.Size, sample_dims: int):
    """The decoder output `recon` (logits, or a (mean, logvar) pair) of shape [*samples, *batch, *event]
    and x [*batch, ...] with the same size per datapoint, checked and flattened for the likelihood's
    rows: (values [N, D], x [Nx, D], [*samples, *batch]). An other per-datapoint shape of x (images
    [B, 1, 28, 28] against logits [B, 784]) is reshaped to event."""
    check_choice("likelihood", likelihood, LIKELIHOODS)
    if likelihood == "gaussian":
        if not (isinstance(recon, (tuple, list)) and len(recon) == 2):
            raise TypeError(f"likelihood='gaussian' needs the decoder output as a (mean, logvar) pair, "
                            f"got {type(recon).__name__}")
        values = tuple(recon)
    else:
        values = (recon,)
    _check_values("decoder output" if likelihood == "bernoulli" else "decoder mean", values[0])
    _check_target("x", x)
    value = values[0]
    lead = sample_dims + len(batch)
    event = value.shape[lead:]
    if tuple(value.shape[sample_dims:lead]) != tuple(batch) or not event:
        expected = ("[L, " if sample_dims else "[") + ", ".join(map(str, batch)) + (", " if batch else "") + "D...]"
        raise ValueError(f"the decoder output {list(value.shape)} must be {expected}: the batch dims of mu "
                         f"{list(batch)} followed by the data dims")
    x_event = x.shape[len(batch):]
    if tuple(x.shape[:len(batch)]) == tuple(batch) and x_event != event and math.prod(x_event) == math.prod(event):
        x = x.reshape(*batch, *event)
    return _LIKELIHOOD_ROWS[likelihood][0](values, x, len(event))


def _log_likelihood(likelihood: str, recon, x: torch.Tensor, batch: torch.Size, sample_dims: int,
                    backend) -> torch.Tensor:
    """log p(x|z) per datapoint [*samples, *batch] for the decoder output `recon` (see _likelihood_inputs)."""
    values, x, rows_batch = _likelihood_inputs(likelihood, recon, x, batch, sample_dims)
    name = backends.resolve(backend, values[0].device)
    return _flat(_LIKELIHOOD_ROWS[likelihood][1](values, x, name), rows_batch)


# The whole objective.

def vae_loss(recon, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, reduction: str = "mean", *,
             beta: float = 1.0, likelihood: str = "bernoulli", backend: str | None = None) -> torch.Tensor:
    """The negative bound of estimator B for one sample, -(log p(x|z) - beta KL(q(z|x) || p(z))), per
    datapoint [...] or reduced: the loss of the PyTorch VAE example (BCE + KLD with reduction="sum"),
    fused and in stable form.

    recon: the decoder output for z = reparameterize(mu, logvar): logits [..., D] (Bernoulli; no
    sigmoid), or a (mean, logvar) pair (Gaussian). x: the data, [..., D] or any per-datapoint shape
    of D elements (e.g. images [B, 1, 28, 28])."""
    mu, logvar = _gaussian_params(mu, logvar)
    check_choice("reduction", reduction, reference.REDUCTIONS)
    check_beta(beta)
    batch = mu.shape[:-1]
    values, x, _ = _likelihood_inputs(likelihood, recon, x, batch, 0)
    _check_devices(decoder_output=values[0], mu=mu)
    name = backends.resolve(backend, mu.device)
    Z = mu.shape[-1]
    m, v = _flat(mu, (-1, Z)), _flat(logvar, (-1, Z))
    if name != "torch" and not x.requires_grad:
        loss = _vae_loss_op(likelihood, values, x, m, v, beta, reduction, name)
        return _flat(loss, batch) if reduction == "none" else loss
    log_px = _LIKELIHOOD_ROWS[likelihood][1](values, x, name)
    kl = reference.gaussian_kl(m.to(_math_dtype(m.dtype)), v.to(_math_dtype(m.dtype))) if name == "torch" else (
        _analytic_kl(m, v, name))
    return reference.reduce(_flat(-(log_px - beta * kl), batch), reduction)


def elbo_loss(decode: Callable, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, *,
              n_samples: int = 1, estimator: str = "analytic", iwae: bool = False, beta: float = 1.0,
              likelihood: str = "bernoulli", reduction: str = "mean", seed: int | None = None,
              backend: str | None = None, batch_rows: tuple[int, int] | None = None) -> torch.Tensor:
    """The negative SGVB bound with L = n_samples samples per datapoint, per datapoint [...] or reduced.

    estimator="analytic": estimator B (eq. 7), (1/L) sum_l log p(x|z_l) - beta KL.
    estimator="mc":       estimator A (eq. 6), (1/L) sum_l [log p(x|z_l) - beta (log q(z_l|x) - log p(z_l))].
    iwae=True (with "mc", beta=1): the importance-weighted bound with k = L,
                          logsumexp_l [log p(x|z_l) - log q(z_l|x) + log p(z_l)] - log L.

    decode maps z [L, ..., Z] to the decoder output for every sample: logits [L, ..., D] or a
    (mean, logvar) pair; x [..., D] (or any per-datapoint shape of D elements) is shared by the samples.
    batch_rows: see Noise in the module's docstring.
    """
    check_n_samples(n_samples, allow_none=False)
    check_choice("estimator", estimator, ESTIMATORS)
    check_beta(beta)
    check_iwae(iwae, estimator, beta)
    check_choice("reduction", reduction, reference.REDUCTIONS)
    z, kl = reparameterize_kl(mu, logvar, n_samples, estimator=estimator, seed=seed, backend=backend,
                              batch_rows=batch_rows)
    log_px = _log_likelihood(likelihood, decode(z), x, mu.shape[:-1], 1, backend)
    bound = reference.iwae_bound(log_px, kl) if iwae else reference.elbo(log_px, kl, beta)
    return reference.reduce(-bound, reduction)
