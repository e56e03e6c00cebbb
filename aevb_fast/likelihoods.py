"""The likelihoods p(x|z) of the decoder and their registry.

Each likelihood has its public functions here: its log-likelihood per datapoint (bernoulli_log_prob,
gaussian_log_prob, ...) and its fused head, the decoder's output layer and likelihood in one op
(linear_bernoulli_log_prob, linear_gaussian_log_prob). LIKELIHOODS maps each name to a Likelihood,
which holds everything else that the library and the training application need to know about it
(its decoder outputs, kernels, reference, fused head, mean, the paper's decoder width): vae_loss,
elbo_loss, the modules, the models, figures and the command line read it instead of branching on
names. A new likelihood is its op (aevb_fast/ops), its public functions and one entry here.
"""

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from . import reference
from ._checks import WIDE, check_choice, check_chunk_rows, check_devices, check_target, check_values, flat, math_dtype
from .ops import backends
from .ops.bernoulli import bernoulli_log_prob as _bernoulli_op
from .ops.bernoulli import bernoulli_log_prob_backward as _bernoulli_backward_op
from .ops.bernoulli import linear_bernoulli_log_prob as _linear_bernoulli_op
from .ops.continuous_bernoulli import continuous_bernoulli_log_prob as _continuous_bernoulli_op
from .ops.continuous_bernoulli import continuous_bernoulli_log_prob_backward as _continuous_bernoulli_backward_op
from .ops.continuous_bernoulli import linear_continuous_bernoulli_log_prob as _linear_continuous_bernoulli_op
from .ops.discretized_logistic_mixture import discretized_logistic_mixture_log_prob as _mixture_op
from .ops.discretized_logistic_mixture import discretized_logistic_mixture_log_prob_backward as _mixture_backward_op
from .ops.gaussian import gaussian_log_prob as _gaussian_op
from .ops.gaussian import gaussian_log_prob_backward as _gaussian_backward_op
from .ops.gaussian import linear_gaussian_log_prob as _linear_gaussian_op
from .ops.laplace import laplace_log_prob as _laplace_op
from .ops.laplace import laplace_log_prob_backward as _laplace_backward_op
from .ops.laplace import linear_laplace_log_prob as _linear_laplace_op
from .ops.linear_likelihood import chunk_rows_for

# The public functions of the likelihoods, which aevb_fast and aevb_fast.functional export.
__all__ = [
    "bernoulli_log_prob",
    "continuous_bernoulli_log_prob",
    "discretized_logistic_mixture_log_prob",
    "gaussian_log_prob",
    "laplace_log_prob",
    "linear_bernoulli_log_prob",
    "linear_continuous_bernoulli_log_prob",
    "linear_gaussian_log_prob",
    "linear_laplace_log_prob",
]

MEAN_ACTIVATIONS = ("identity", "sigmoid")
_ACTIVATIONS = {"identity": lambda t: t, "sigmoid": torch.sigmoid}


@dataclass(frozen=True, eq=False)
class Likelihood:
    """One decoder likelihood p(x|z). Decoder outputs ("values") come as a tuple in the order of
    `params`; flattened, each is [N, D] and x [Nx, D] with Nx dividing N (row n reads x[n % Nx]).

    name         its name, the likelihood= argument
    params       the decoder outputs it reads per datapoint: ("logits",), ("mean", "logvar")
    activations  per output, the paper's decoder's activation for data in [0, 1] (the identity, or a
                 sigmoid for a mean in (0, 1)); the fused head applies the same
    hidden_dim   the paper's decoder width for the data it models (500 for MNIST, 200 for Frey Face)
    log_prob     (values, x, reduction="none", **options) -> its public log-likelihood function, the
                 values as a tuple
    inputs       (values, x, event_dims) -> (values [N, D], x [Nx, D], batch): checked and flattened
    rows         (values, x, backend) -> log p(x|z) [N]: the fused op, or the reference for "torch"
    kernel       (how, values, x, backend) -> log p(x|z) [N] by the op's "launch" (the kernel alone)
                 or "prechecked" (autograd and tracing as they may) call
    kernel_backward  (grad [N], values, x, backend) -> the values' gradients (a tuple), kernel alone
    reference    (values, x) -> log p(x|z) [N] in plain PyTorch, in the values' dtype
    head         (h [..., H], layers, x, reduction, backend) -> log p(x|z) of the fused head, layers
                 the (weight [D, H], bias [D] or None) per output ([D K, H] and [D K] for a mixture,
                 whose head is the layers and then its fused likelihood)
    mean         (values) -> E[x|z], the images a figure shows
    components   for a mixture, the decoder's number of components K per element (its values
                 [..., D, K]); None otherwise
    """

    name: str
    params: tuple[str, ...]
    activations: tuple[str, ...]
    hidden_dim: int
    log_prob: Callable
    inputs: Callable
    rows: Callable
    kernel: Callable
    kernel_backward: Callable
    reference: Callable
    head: Callable
    mean: Callable
    components: int | None = None

    def output_width(self, data_dim: int) -> int:
        """Each decoder output layer's width for data of data_dim elements."""
        return data_dim * (self.components or 1)

    def value_shape(self, data_shape, components: int | None = None) -> tuple[int, ...]:
        """The shape of each value beside data of data_shape: the same, or with the K components
        (by default the decoder's) last for a mixture."""
        if self.components is None:
            return tuple(data_shape)
        return (*data_shape, components or self.components)

    def decoder_values(self, layers, h: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The decoder outputs for its last hidden layer h: each output layer (in the order of
        params) and its activation, [..., D, K] for a mixture."""
        values = tuple(_ACTIVATIONS[a](layer(h)) for a, layer in zip(self.activations, layers))
        return values if self.components is None else tuple(v.unflatten(-1, (-1, self.components)) for v in values)


def _rows(values: dict[str, torch.Tensor], x: torch.Tensor, event_dims):
    """Broadcasts values and targets, flattens values to [N, D] and x to [Nx, D] with Nx dividing N
    (x keeps its own rows when its shape is a suffix of the values'), and returns the batch shape."""
    shape = x.shape
    if type(event_dims) is int and event_dims == 1 and len(shape) == 2:
        tensors = list(values.values())
        if all(v.shape == shape for v in tensors):
            # [N, D] already, the common case: no views (autograd nodes) to make, checked first as
            # the steps below cost a microsecond or two on one-element calls.
            return tensors, x, shape[:1]
    shapes = [v.shape for v in values.values()]
    if all(s == shapes[0] for s in shapes) and x.shape == shapes[0][len(shapes[0]) - x.dim() :]:
        shape = shapes[0]  # the common case, without torch.broadcast_shapes' per-call cost
    else:
        try:
            shape = torch.broadcast_shapes(x.shape, *shapes)
        except RuntimeError:
            given = ", ".join(f"{n} {list(v.shape)}" for n, v in {**values, "x": x}.items())
            raise ValueError(f"shapes do not broadcast: {given}") from None
    if isinstance(event_dims, bool) or not isinstance(event_dims, int) or not 1 <= event_dims <= len(shape):
        raise ValueError(
            f"event_dims must be an int in [1, {len(shape)}] for inputs of shape {list(shape)}, got {event_dims!r}"
        )
    batch, event = shape[:-event_dims], shape[-event_dims:]
    N, D = math.prod(batch), math.prod(event)
    # Leading 1s of x (a [1, D] row beside [N, D] values) broadcast by repeating rows, as a suffix does;
    # expanding them instead would copy x to [N, D] in the kernels' contiguous inputs.
    ones = 0
    while x.dim() - ones > event_dims and x.shape[ones] == 1:
        ones += 1
    if not (x.dim() >= event_dims and tuple(x.shape[ones:]) == tuple(shape[len(shape) - x.dim() + ones :])):
        x = x.expand(shape)
    rows = [(v if v.shape == shape else v.expand(shape)).reshape(N, D) for v in values.values()]
    return rows, x.reshape(math.prod(x.shape[:-event_dims]), D), batch


def _expand_rows(x: torch.Tensor, n: int) -> torch.Tensor:
    """x [Nx, D] repeated to [n, D], row i being x[i % Nx]: the torch backend's view of repeated targets."""
    return x if x.shape[0] == n else x.expand(n // x.shape[0], *x.shape).reshape(n, x.shape[1])


def bernoulli_log_prob(
    logits: torch.Tensor, x: torch.Tensor, reduction: str = "none", *, event_dims: int = 1, backend: str | None = None
) -> torch.Tensor:
    """log p(x|z) = sum_i x_i log y_i + (1 - x_i) log(1 - y_i), y = sigmoid(logits) (the paper's
    Bernoulli decoder), summed over the last event_dims dims: per datapoint [...] or reduced.

    logits [..., D]: the decoder's pre-sigmoid output. x: targets in [0, 1] (grey levels or 0/1),
    float, uint8 or bool, broadcast against logits."""
    check_choice("reduction", reduction, reference.REDUCTIONS)
    values, x, batch = _logit_inputs((logits,), x, event_dims)
    log_prob = _bernoulli_rows(values, x, backends.resolve(backend, logits.device))
    return reference.reduce(flat(log_prob, batch), reduction)


def continuous_bernoulli_log_prob(
    logits: torch.Tensor, x: torch.Tensor, reduction: str = "none", *, event_dims: int = 1, backend: str | None = None
) -> torch.Tensor:
    """log p(x|z) = sum_i x_i log y_i + (1 - x_i) log(1 - y_i) + log C(a_i), y = sigmoid(a), with the
    normalizer C(a) = a / tanh(a / 2) (C(0) = 2): the continuous Bernoulli (Loaiza-Ganem & Cunningham
    2019), a density on [0, 1] for grey-level data (MNIST as it is, Frey Face), where the Bernoulli's
    log-likelihood of a grey level is no likelihood. Summed over the last event_dims dims: per
    datapoint [...] or reduced.

    logits [..., D]: the decoder's output, a = logit(lambda); x: targets in [0, 1], float, uint8 or
    bool, broadcast against logits. log C is made in a stable form for logits of any size, through
    its series near a = 0 (lambda = 1/2); at an infinite logit the density is a point mass's (+inf
    at its point, -inf elsewhere)."""
    check_choice("reduction", reduction, reference.REDUCTIONS)
    values, x, batch = _logit_inputs((logits,), x, event_dims)
    log_prob = _continuous_bernoulli_rows(values, x, backends.resolve(backend, logits.device))
    return reference.reduce(flat(log_prob, batch), reduction)


def _logit_inputs(values, x, event_dims):
    """(logits,) and x checked and flattened by _rows."""
    check_values("logits", values[0])
    check_target("x", x)
    if values[0].device != x.device:
        check_devices(logits=values[0], x=x)  # raises, naming them
    return _rows({"logits": values[0]}, x, event_dims)


def _logit_rows(op, reference_fn: Callable) -> Callable:
    """log p(x|z) [N] for flattened logits [N, D] and x [Nx, D] of a likelihood whose op and
    reference take (logits, x)."""

    def rows(values, x, backend: str) -> torch.Tensor:
        (a,) = values
        if backend != "torch":
            return op.prechecked(a, x, backend)
        # x in the math dtype before its rows repeat: the repeats' gradients then sum in it.
        md = math_dtype(a.dtype)
        return reference_fn(a.to(md), _expand_rows(x.to(md), a.shape[0]))

    return rows


def discretized_logistic_mixture_log_prob(
    x: torch.Tensor,
    logit_probs: torch.Tensor,
    means: torch.Tensor,
    log_scales: torch.Tensor,
    reduction: str = "none",
    *,
    event_dims: int = 1,
    backend: str | None = None,
) -> torch.Tensor:
    """log P(x|z) = sum_i logsumexp_k(log softmax(logit_probs)_ik + log P_k(x_i)) for 8-bit grey
    levels x = v / 255 under a mixture of K discretized logistics per element (Salimans et al. 2017,
    PixelCNN++, in [0, 1]): P_k(x) the mass of x's bin of width 1/255 under the logistic of mean
    means_ik and scale exp(log_scales_ik), the bins of 0 and 255 open to -inf and +inf, and where a
    bin's mass falls to 1e-5 or below the density at its middle times its width. A probability of
    the 8-bit data: -log P / (D log 2) is their bits per dimension. Summed over the last event_dims
    dims of x: per datapoint [...] or reduced.

    x [..., D]: floating grey levels v / 255 (divide 8-bit data by 255), taking no gradient;
    logit_probs, means, log_scales [..., D, K] of one shape, x broadcast against their [..., D]."""
    check_choice("reduction", reduction, reference.REDUCTIONS)
    values, x, batch = _mixture_inputs((logit_probs, means, log_scales), x, event_dims)
    log_prob = _mixture_rows(values, x, backends.resolve(backend, means.device))
    return reference.reduce(flat(log_prob, batch), reduction)


_MIXTURE_VALUES = ("logit_probs", "means", "log_scales")


def _mixture_inputs(values, x, event_dims):
    """(logit_probs, means, log_scales) [..., D, K] and x checked: values [N, D, K], x [Nx, D]."""
    for name, v in zip(_MIXTURE_VALUES, values):
        check_values(name, v)
    check_target("x", x)
    check_devices(x=x, **dict(zip(_MIXTURE_VALUES, values)))
    if not x.is_floating_point():
        raise ValueError(
            f"x must hold grey levels v / 255 as floats for the discretized logistic mixture, got {x.dtype}: "
            "divide 8-bit data by 255"
        )
    if x.requires_grad:
        raise ValueError("x requires grad, but the discretized logistic mixture gives none: its data are discrete")
    shape = values[0].shape
    if len(shape) < 2 or any(v.shape != shape for v in values):
        raise ValueError(
            "logit_probs, means and log_scales must be [..., D, K] of one shape, got "
            + ", ".join(f"{n} {list(v.shape)}" for n, v in zip(_MIXTURE_VALUES, values))
        )
    dtype = functools.reduce(torch.promote_types, (v.dtype for v in values))
    # The rows of a stand-in of the values' [..., D] (stride 0: nothing is copied) lay out x.
    (stand_in,), x, batch = _rows({"means": values[0].new_empty(()).expand(shape[:-1])}, x, event_dims)
    N, D = stand_in.shape
    return tuple(v.to(dtype).reshape(N, D, shape[-1]) for v in values), x, batch


def _mixture_rows(values, x, backend: str) -> torch.Tensor:
    """log P(x|z) [N] for values [N, D, K] and x [Nx, D]."""
    if backend != "torch":
        return _mixture_op.prechecked(x, *values, backend)
    md = math_dtype(values[0].dtype)
    return reference.discretized_logistic_mixture_log_prob(
        _expand_rows(x.to(md), values[0].shape[0]), *(v.to(md) for v in values)
    )


def _mixture_head(h, layers, x, reduction, backend):
    """The mixture's decoder head: its output layers (each [D K, H]) and then its fused likelihood."""
    values = tuple(torch.nn.functional.linear(h, w, b).unflatten(-1, (x.shape[-1], -1)) for w, b in layers)
    return discretized_logistic_mixture_log_prob(x, *values, reduction, backend=backend)


_bernoulli_rows = _logit_rows(_bernoulli_op, reference.bernoulli_log_prob)
_continuous_bernoulli_rows = _logit_rows(_continuous_bernoulli_op, reference.continuous_bernoulli_log_prob)


def gaussian_log_prob(
    x: torch.Tensor,
    mean: torch.Tensor,
    logvar: torch.Tensor,
    reduction: str = "none",
    *,
    event_dims: int = 1,
    backend: str | None = None,
) -> torch.Tensor:
    """log N(x; mean, exp(logvar) I) = -1/2 sum_i (log 2pi + logvar_i + (x_i - mean_i)^2 exp(-logvar_i))
    (the paper's Gaussian decoder), summed over the last event_dims dims: per datapoint [...] or reduced.

    mean and logvar broadcast against each other (a shared logvar [D] works) and against x."""
    check_choice("reduction", reduction, reference.REDUCTIONS)
    values, x, batch = _gaussian_inputs((mean, logvar), x, event_dims)
    log_prob = _gaussian_rows(values, x, backends.resolve(backend, mean.device))
    return reference.reduce(flat(log_prob, batch), reduction)


def laplace_log_prob(
    x: torch.Tensor,
    loc: torch.Tensor,
    logscale: torch.Tensor,
    reduction: str = "none",
    *,
    event_dims: int = 1,
    backend: str | None = None,
) -> torch.Tensor:
    """log Laplace(x; loc, exp(logscale)) = -sum_i (log 2 + logscale_i + |x_i - loc_i| exp(-logscale_i)),
    summed over the last event_dims dims: per datapoint [...] or reduced. The L1 reconstruction loss
    made a likelihood: heavier tails than the Gaussian's, so outlying pixels pull less on the fit.

    loc and logscale broadcast against each other (a shared logscale [D] works) and against x."""
    check_choice("reduction", reduction, reference.REDUCTIONS)
    values, x, batch = _laplace_inputs((loc, logscale), x, event_dims)
    log_prob = _laplace_rows(values, x, backends.resolve(backend, loc.device))
    return reference.reduce(flat(log_prob, batch), reduction)


def _location_scale_inputs(names: tuple[str, str]) -> Callable:
    """The inputs' check of a likelihood of x and two values named `names` (a location and a log
    scale): checked, promoted to one dtype and flattened by _rows."""

    def inputs(values, x, event_dims):
        a, b = values
        check_target("x", x)
        check_values(names[0], a)
        check_values(names[1], b)
        if not a.device == b.device == x.device:
            check_devices(x=x, **{names[0]: a, names[1]: b})  # raises, naming them
        if a.dtype != b.dtype:
            dtype = torch.promote_types(a.dtype, b.dtype)
            a, b = a.to(dtype), b.to(dtype)
        return _rows({names[0]: a, names[1]: b}, x, event_dims)

    return inputs


def _location_scale_rows(op, reference_fn: Callable) -> Callable:
    """log p(x|z) [N] for flattened values [N, D] and x [Nx, D] of a likelihood whose op and
    reference take (x, location, log scale)."""

    def rows(values, x, backend: str) -> torch.Tensor:
        a, b = values
        if backend != "torch":
            return op.prechecked(x, a, b, backend)
        md = math_dtype(a.dtype)
        return reference_fn(_expand_rows(x.to(md), a.shape[0]), a.to(md), b.to(md))

    return rows


_gaussian_inputs = _location_scale_inputs(("mean", "logvar"))
_gaussian_rows = _location_scale_rows(_gaussian_op, reference.gaussian_log_prob)
_laplace_inputs = _location_scale_inputs(("loc", "logscale"))
_laplace_rows = _location_scale_rows(_laplace_op, reference.laplace_log_prob)


# The decoder's output layer and its likelihood in one op.


def _linear_head(
    op, h, params: dict, x, options, reduction, chunk_rows, backend, reference_values, reference_fn, fused_fn
):
    """Checks a fused head's arguments and runs it: the fused op for a kernel backend (the output
    layer and likelihood chunked over rows), or, where one chunk would hold every row of float32 or
    float64 inputs, fused_fn(reference_values(h, params), x, reduction, backend), the plain Linear
    outputs and the fused likelihood; else (backend torch) reference_fn(reference_values(h,
    params), x). Returns log p(x|z) per datapoint [...] or reduced."""
    check_values("h", h)
    given = {name: p for name, p in params.items() if p is not None}
    for name, p in given.items():
        check_values(name, p)
    check_target("x", x)
    check_devices(h=h, **given, x=x)
    check_choice("reduction", reduction, reference.REDUCTIONS)
    check_chunk_rows(chunk_rows)
    weights = [p for name, p in given.items() if name.endswith("weight")]
    D, H = weights[0].shape if weights[0].dim() == 2 else (None, None)
    for name, p in given.items():
        if p.shape != ((D, H) if name.endswith("weight") else (D,)):
            raise ValueError(
                f"{name} must be [{D}, {H}] (weights) or [{D}] (biases) like the first weight, got {list(p.shape)}"
            )
    if h.dim() == 0 or h.shape[-1] != H:
        raise ValueError(f"h must be [..., {H}] for weights [{D}, {H}], got {list(h.shape)}")
    batch, x_batch = tuple(h.shape[:-1]), tuple(x.shape[:-1])
    if x.dim() == 0 or x.shape[-1] != D or len(x_batch) > len(batch) or x_batch != batch[len(batch) - len(x_batch) :]:
        raise ValueError(
            f"x must be [..., {D}] with its leading dims the last ones of h's {list(batch)} (targets "
            f"shared by the samples of h), got {list(x.shape)}"
        )
    if x.requires_grad:
        raise ValueError(
            "x requires grad, but the fused head gives no gradient for the targets: detach it, or use "
            "a Linear layer and the likelihood function"
        )
    if torch.is_autocast_enabled(h.device.type) and h.dtype != torch.float64:
        # As nn.Linear under autocast: the matmuls in the autocast dtype (float64 left alone).
        dtype = torch.get_autocast_dtype(h.device.type)
        h, params = h.to(dtype), {name: p if p is None else p.to(dtype) for name, p in params.items()}
    else:
        dtypes = {h.dtype, *(p.dtype for p in given.values())}
        if len(dtypes) > 1:
            raise TypeError(
                "h, weights and biases must share one dtype (as for nn.Linear), got "
                + ", ".join(f"{name} {t.dtype}" for name, t in {"h": h, **given}.items())
            )
    name = backends.resolve(backend, h.device)
    if name == "torch":
        values = [v.to(math_dtype(h.dtype)) for v in reference_values(h, params)]
        return reference.reduce(reference_fn(*values, x), reduction)
    N = math.prod(batch)
    rows = chunk_rows if chunk_rows is not None else chunk_rows_for(N, H, D * len(weights))
    if 0 < N <= rows and h.dtype in WIDE:
        # One chunk makes the whole output at once, so chunking saves no memory here; the Linear
        # and the likelihood op are fewer calls (forward + backward, 2-core CPU: one element 72
        # against 170 us, [100, 500] -> 784 1.15 against 1.40 ms). Half precision stays in the
        # op, whose gradient sums are float32.
        return fused_fn(reference_values(h, params), x, reduction, name)
    with_grads = reduction != "none" and torch.is_grad_enabled() and any(t.requires_grad for t in (h, *given.values()))
    out = op(
        h.reshape(N, H), *params.values(), x.reshape(-1, D), *options, reduction != "none", with_grads, rows, name
    )[0]
    if reduction == "none":
        return out.view(batch)
    return out if reduction == "sum" else out / N


def linear_bernoulli_log_prob(
    h: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    x: torch.Tensor,
    reduction: str = "none",
    *,
    chunk_rows: int | None = None,
    backend: str | None = None,
) -> torch.Tensor:
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
    return _linear_logits(
        _linear_bernoulli_op,
        h,
        weight,
        bias,
        x,
        reduction,
        chunk_rows,
        backend,
        reference.bernoulli_log_prob,
        bernoulli_log_prob,
    )


def linear_continuous_bernoulli_log_prob(
    h: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    x: torch.Tensor,
    reduction: str = "none",
    *,
    chunk_rows: int | None = None,
    backend: str | None = None,
) -> torch.Tensor:
    """continuous_bernoulli_log_prob(h @ weight.T + bias, x, reduction) with the decoder's output layer
    fused in, per datapoint [...] or reduced, without the [..., D] logits ever in memory in full.

    Shapes and chunking as linear_bernoulli_log_prob."""
    return _linear_logits(
        _linear_continuous_bernoulli_op,
        h,
        weight,
        bias,
        x,
        reduction,
        chunk_rows,
        backend,
        reference.continuous_bernoulli_log_prob,
        continuous_bernoulli_log_prob,
    )


def _linear_logits(op, h, weight, bias, x, reduction, chunk_rows, backend, reference_fn, log_prob_fn):
    """The fused head of a likelihood of logits, whose op, reference and public function take
    (logits, x)."""
    return _linear_head(
        op,
        h,
        {"weight": weight, "bias": bias},
        x,
        (),
        reduction,
        chunk_rows,
        backend,
        lambda h, p: (torch.nn.functional.linear(h, p["weight"], p["bias"]),),
        reference_fn,
        lambda values, x, reduction, name: log_prob_fn(*values, x, reduction, backend=name),
    )


def linear_gaussian_log_prob(
    h: torch.Tensor,
    mean_weight: torch.Tensor,
    mean_bias: torch.Tensor | None,
    logvar_weight: torch.Tensor,
    logvar_bias: torch.Tensor | None,
    x: torch.Tensor,
    reduction: str = "none",
    *,
    mean_activation: str = "identity",
    chunk_rows: int | None = None,
    backend: str | None = None,
) -> torch.Tensor:
    """gaussian_log_prob(x, act(h @ mean_weight.T + mean_bias), h @ logvar_weight.T + logvar_bias,
    reduction) with the decoder's two output layers fused in (the paper's Gaussian decoder, whose
    mean_activation is "sigmoid"; "identity" leaves the mean linear), per datapoint [...] or reduced,
    without the [..., D] means and log-variances ever in memory in full.

    Shapes and chunking as linear_bernoulli_log_prob, with two (weight [D, H], bias [D] or None) pairs."""
    return _linear_location_scale(
        _linear_gaussian_op,
        ("mean", "logvar"),
        h,
        (mean_weight, mean_bias, logvar_weight, logvar_bias),
        x,
        reduction,
        mean_activation,
        chunk_rows,
        backend,
        reference.gaussian_log_prob,
        gaussian_log_prob,
    )


def linear_laplace_log_prob(
    h: torch.Tensor,
    loc_weight: torch.Tensor,
    loc_bias: torch.Tensor | None,
    logscale_weight: torch.Tensor,
    logscale_bias: torch.Tensor | None,
    x: torch.Tensor,
    reduction: str = "none",
    *,
    loc_activation: str = "identity",
    chunk_rows: int | None = None,
    backend: str | None = None,
) -> torch.Tensor:
    """laplace_log_prob(x, act(h @ loc_weight.T + loc_bias), h @ logscale_weight.T + logscale_bias,
    reduction) with the decoder's two output layers fused in (loc_activation "sigmoid" for data in
    [0, 1]), per datapoint [...] or reduced, without the [..., D] locations and log scales ever in
    memory in full.

    Shapes and chunking as linear_bernoulli_log_prob, with two (weight [D, H], bias [D] or None) pairs."""
    return _linear_location_scale(
        _linear_laplace_op,
        ("loc", "logscale"),
        h,
        (loc_weight, loc_bias, logscale_weight, logscale_bias),
        x,
        reduction,
        loc_activation,
        chunk_rows,
        backend,
        reference.laplace_log_prob,
        laplace_log_prob,
    )


@functools.cache
def _head_names(names: tuple[str, str]) -> tuple[str, tuple[str, ...]]:
    """The activation option's name and the parameters' names of a location-scale head."""
    location, scale = names
    return f"{location}_activation", (f"{location}_weight", f"{location}_bias", f"{scale}_weight", f"{scale}_bias")


def _linear_location_scale(
    op, names, h, params, x, reduction, activation, chunk_rows, backend, reference_fn, log_prob_fn
):
    """The fused head of a likelihood of x, a location (through `activation`) and a log scale named
    `names`, whose op, reference and public function take (x, location, log scale)."""
    option, keys = _head_names(names)
    check_choice(option, activation, MEAN_ACTIVATIONS)
    sigmoid = activation == "sigmoid"

    def values(h, p):
        location = torch.nn.functional.linear(h, p[keys[0]], p[keys[1]])
        scale = torch.nn.functional.linear(h, p[keys[2]], p[keys[3]])
        return torch.sigmoid(location) if sigmoid else location, scale

    return _linear_head(
        op,
        h,
        dict(zip(keys, params)),
        x,
        (sigmoid,),
        reduction,
        chunk_rows,
        backend,
        values,
        lambda location, scale, x: reference_fn(x, location, scale),
        lambda values, x, reduction, name: log_prob_fn(x, *values, reduction, backend=name),
    )


def _likelihood_inputs(likelihood: str, recon, x: torch.Tensor, batch: torch.Size, sample_dims: int):
    """The decoder output `recon` (one tensor, or a tuple in the order of the likelihood's params) of
    shape [*samples, *batch, *event] and x [*batch, ...] with the same size per datapoint, checked
    and flattened for the likelihood's rows: (Likelihood, values [N, D], x [Nx, D], [*samples,
    *batch]). An other per-datapoint shape of x (images [B, 1, 28, 28] against logits [B, 784]) is
    reshaped to event."""
    check_choice("likelihood", likelihood, LIKELIHOODS)
    entry = LIKELIHOODS[likelihood]
    if len(entry.params) > 1:
        if not (isinstance(recon, (tuple, list)) and len(recon) == len(entry.params)):
            kind = "pair" if len(entry.params) == 2 else "tuple"
            raise TypeError(
                f"likelihood={likelihood!r} needs the decoder output as a ({', '.join(entry.params)}) "
                f"{kind}, got {type(recon).__name__}"
            )
        values = tuple(recon)
    else:
        values = (recon,)
    check_values("decoder output" if len(values) == 1 else f"decoder {entry.params[0]}", values[0])
    check_target("x", x)
    value = values[0]
    lead = sample_dims + len(batch)
    event = value.shape[lead : value.dim() - (entry.components is not None)]
    if tuple(value.shape[sample_dims:lead]) != tuple(batch) or not event:
        expected = ("[L, " if sample_dims else "[") + ", ".join(map(str, batch)) + (", " if batch else "") + "D...]"
        raise ValueError(
            f"the decoder output {list(value.shape)} must be {expected}: the batch dims of mu "
            f"{list(batch)} followed by the data dims"
        )
    x_event = x.shape[len(batch) :]
    if tuple(x.shape[: len(batch)]) == tuple(batch) and x_event != event and math.prod(x_event) == math.prod(event):
        x = x.reshape(*batch, *event)
    return (entry, *entry.inputs(values, x, len(event)))


def _log_likelihood(
    likelihood: str, recon, x: torch.Tensor, batch: torch.Size, sample_dims: int, backend
) -> torch.Tensor:
    """log p(x|z) per datapoint [*samples, *batch] for the decoder output `recon` (see _likelihood_inputs)."""
    entry, values, x, rows_batch = _likelihood_inputs(likelihood, recon, x, batch, sample_dims)
    name = backends.resolve(backend, values[0].device)
    return flat(entry.rows(values, x, name), rows_batch)


LIKELIHOODS: dict[str, Likelihood] = {}


def _register(entry: Likelihood) -> None:
    LIKELIHOODS[entry.name] = entry


_register(
    Likelihood(
        name="bernoulli",
        params=("logits",),
        activations=("identity",),
        hidden_dim=500,
        log_prob=lambda v, x, reduction="none", **options: bernoulli_log_prob(*v, x, reduction, **options),
        inputs=_logit_inputs,
        rows=_bernoulli_rows,
        kernel=lambda how, v, x, b: getattr(_bernoulli_op, how)(*v, x, b),
        kernel_backward=lambda g, v, x, b: (_bernoulli_backward_op.launch(g, *v, x, b),),
        reference=lambda v, x: reference.bernoulli_log_prob(*v, x),
        head=lambda h, layers, x, reduction, backend: linear_bernoulli_log_prob(
            h, *layers[0], x, reduction, backend=backend
        ),
        mean=lambda v: torch.sigmoid(v[0]),
    )
)
_register(
    Likelihood(
        name="continuous_bernoulli",
        params=("logits",),
        activations=("identity",),
        hidden_dim=500,
        log_prob=lambda v, x, reduction="none", **options: continuous_bernoulli_log_prob(*v, x, reduction, **options),
        inputs=_logit_inputs,
        rows=_continuous_bernoulli_rows,
        kernel=lambda how, v, x, b: getattr(_continuous_bernoulli_op, how)(*v, x, b),
        kernel_backward=lambda g, v, x, b: (_continuous_bernoulli_backward_op.launch(g, *v, x, b),),
        reference=lambda v, x: reference.continuous_bernoulli_log_prob(*v, x),
        head=lambda h, layers, x, reduction, backend: linear_continuous_bernoulli_log_prob(
            h, *layers[0], x, reduction, backend=backend
        ),
        mean=lambda v: reference.continuous_bernoulli_mean(v[0]),
    )
)
_register(
    Likelihood(
        name="discretized_logistic_mixture",
        params=_MIXTURE_VALUES,
        activations=("identity", "identity", "identity"),
        hidden_dim=200,
        log_prob=lambda v, x, reduction="none", **options: discretized_logistic_mixture_log_prob(
            x, *v, reduction, **options
        ),
        inputs=_mixture_inputs,
        rows=_mixture_rows,
        kernel=lambda how, v, x, b: getattr(_mixture_op, how)(x, *v, b),
        kernel_backward=lambda g, v, x, b: _mixture_backward_op.launch(g, x, *v, b),
        reference=lambda v, x: reference.discretized_logistic_mixture_log_prob(x, *v),
        head=_mixture_head,
        mean=lambda v: (torch.softmax(v[0], -1) * v[1]).sum(-1).clamp(0, 1),
        components=10,
    )
)
_register(
    Likelihood(
        name="gaussian",
        params=("mean", "logvar"),
        activations=("sigmoid", "identity"),
        hidden_dim=200,
        log_prob=lambda v, x, reduction="none", **options: gaussian_log_prob(x, *v, reduction, **options),
        inputs=_gaussian_inputs,
        rows=_gaussian_rows,
        kernel=lambda how, v, x, b: getattr(_gaussian_op, how)(x, *v, b),
        kernel_backward=lambda g, v, x, b: _gaussian_backward_op.launch(g, x, *v, b),
        reference=lambda v, x: reference.gaussian_log_prob(x, *v),
        head=lambda h, layers, x, reduction, backend: linear_gaussian_log_prob(
            h, *layers[0], *layers[1], x, reduction, mean_activation="sigmoid", backend=backend
        ),
        mean=lambda v: v[0],
    )
)
_register(
    Likelihood(
        name="laplace",
        params=("loc", "logscale"),
        activations=("sigmoid", "identity"),
        hidden_dim=200,
        log_prob=lambda v, x, reduction="none", **options: laplace_log_prob(x, *v, reduction, **options),
        inputs=_laplace_inputs,
        rows=_laplace_rows,
        kernel=lambda how, v, x, b: getattr(_laplace_op, how)(x, *v, b),
        kernel_backward=lambda g, v, x, b: _laplace_backward_op.launch(g, x, *v, b),
        reference=lambda v, x: reference.laplace_log_prob(x, *v),
        head=lambda h, layers, x, reduction, backend: linear_laplace_log_prob(
            h, *layers[0], *layers[1], x, reduction, loc_activation="sigmoid", backend=backend
        ),
        mean=lambda v: v[0],
    )
)
