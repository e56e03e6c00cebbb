"""aevb_fast::linear_<name>_log_prob for each likelihood (linear_bernoulli_log_prob,
linear_gaussian_log_prob, ...): a decoder's output layers and its likelihood in one op, chunked over
rows, so that the decoder's [N, D] outputs never exist in full (docs/design.md, fused heads):

    values_k = h W_k^T + b_k, one projection per value of the likelihood (the Bernoulli's logits;
    the Gaussian's mean and logvar), the first one through a sigmoid if the op's sigmoid_<value> is
    set (the paper's Frey Face decoder's mean); log p(x|z) the likelihood op on those values.

For each chunk of rows: one matmul per projection makes the chunk's outputs, the fused likelihood
kernels of the backend (C++ on CPU; Triton or CUDA on GPU) their per-row values and gradient, and two
more matmuls per projection that chunk's share of the gradients of h, W and b. A chunk's outputs hold
up to four times as many elements as h (chunk_rows_for), so the extra memory is of the order of the
input's.

Two modes:
- reduce=True: the output is the sum over rows, and with_grads makes the gradients for a unit
  upstream gradient in the forward pass; the backward only scales them by the incoming scalar.
- reduce=False: per-row values [N]. The gradients of W and b weight each row by its own upstream
  gradient, so they cannot be made ahead: the backward op walks the chunks again.

Shapes: h [N, H]; weights [D, H] and biases [D] (or None) of h's dtype; x [Nx, D] with N a multiple
of Nx (row n reads x[n % Nx]), float, uint8 or bool; log_prob [] or [N] float32 (float64 for float64
h); gradients of h [N, H], the weights and the biases made in float32 (float64 for float64
inputs): the forward op returns them so, the backward op (and the autograd rule, after scaling) in
the inputs' dtypes.
"""

import functools

import torch

from ._library import define, require, require_one_device, row_dtype
from .backends import KERNEL_BACKENDS

# A chunk's outputs may hold CHUNK_PER_INPUT times as many elements as h, and never need to hold
# fewer than MIN_CHUNK_ELEMENTS (16 MiB of float32). Larger chunks mean fewer, larger matmuls and
# fewer passes over the [D, H] gradient accumulators: at [8192, 500] -> 12288 on the 2-core CI
# machine, chunks of ~1,300 rows took 2.8 s forward + backward against 3.2 s for ~330 (h's size),
# and the peak memory stays a few times h's size.
CHUNK_PER_INPUT = 4
MIN_CHUNK_ELEMENTS = 1 << 22


def chunk_rows_for(n: int, in_features: int, out_features: int) -> int:
    """Rows per chunk for N rows of h [N, in_features] whose outputs are out_features wide (all
    projections together): as many as keep a chunk's outputs within max(CHUNK_PER_INPUT * h's size,
    MIN_CHUNK_ELEMENTS) elements (Liger-Kernel's fused linear cross-entropy sizes chunks like h)."""
    budget = max(CHUNK_PER_INPUT * n * in_features, MIN_CHUNK_ELEMENTS)
    return max(1, min(n, budget // max(out_features, 1)))


def _chunks(n: int, nx: int, rows: int):
    """(rows of h, rows of x) slice pairs covering n rows in chunks of at most `rows` (or whole copies
    of x). The kernels read x[r % Nx] with r counted from the chunk's first row, so a chunk either
    holds whole copies of x or lies inside one."""
    if nx == n:
        for start in range(0, n, rows):
            yield slice(start, min(start + rows, n)), slice(start, min(start + rows, n))
    elif rows >= nx:
        step = rows // nx * nx
        for start in range(0, n, step):
            yield slice(start, min(start + step, n)), slice(0, nx)
    else:
        for copy in range(0, n, nx):
            for start in range(0, nx, rows):
                stop = min(start + rows, nx)
                yield slice(copy + start, copy + stop), slice(start, stop)


def _walk(h, projections, x, g, chunk_rows, likelihood, with_rows, with_grads):
    """Runs the chunks. projections: [(W, b or None)]; g: [N] upstream gradients of the rows (with
    with_grads); likelihood(values, x, g, with_rows) -> (per-row values or None, gradients of the
    values or None).
    Returns (log_prob [N] or None, grad_h or None, [grad_W], [grad_b]), the gradients in float32
    (float64 for float64 inputs) whatever the inputs' dtype: a half-precision sum over many rows
    (or many outputs) can pass the dtype's range before the upstream gradient scales it down."""
    N = h.shape[0]
    accumulate = torch.float64 if h.dtype == torch.float64 else torch.float32
    log_prob = h.new_empty((N,), dtype=row_dtype(h.dtype)) if with_rows else None
    grad_h = torch.empty(h.shape, dtype=accumulate, device=h.device) if with_grads else None
    # Half precision: the gradients' matmuls in float32 (sums over a chunk's rows or the outputs
    # would round, or overflow, in the half dtype).
    widened = [w if w.dtype == accumulate else w.to(accumulate) for w, _ in projections] if with_grads else []
    # Each projection's gradient sums, in float32 (float64), made by the first chunk: no zero-fill.
    grad_w = [torch.zeros(w.shape, dtype=accumulate, device=h.device) if N == 0 else None for w, _ in projections]
    grad_b = [
        torch.zeros(b.shape, dtype=accumulate, device=h.device) if N == 0 and b is not None else None
        for _, b in projections
    ]
    for rows, x_rows in _chunks(N, x.shape[0], chunk_rows):
        h_c = h[rows]
        values = [torch.addmm(b, h_c, w.t()) if b is not None else h_c @ w.t() for w, b in projections]
        out, grads = likelihood(values, x[x_rows], g[rows] if with_grads else None, with_rows)
        if with_rows:
            log_prob[rows] = out
        if not with_grads:
            continue
        h_wide = h_c if h_c.dtype == accumulate else h_c.to(accumulate)
        for i, ((_, b), grad) in enumerate(zip(projections, grads)):
            grad = grad if grad.dtype == accumulate else grad.to(accumulate)
            # d/dh = grad W,  d/dW = grad^T h,  d/db = sum of grad over the rows
            if i == 0:
                torch.mm(grad, widened[i], out=grad_h[rows])
            else:
                grad_h[rows].addmm_(grad, widened[i])
            if grad_w[i] is None:
                grad_w[i] = grad.t() @ h_wide
            else:
                grad_w[i].addmm_(grad.t(), h_wide)
            if b is not None:
                grad_b[i] = (
                    grad.sum(0, dtype=accumulate)
                    if grad_b[i] is None
                    else grad_b[i].add_(grad.sum(0, dtype=accumulate))
                )
    if not with_grads:
        return log_prob, None, [], []
    return log_prob, grad_h, grad_w, grad_b


def _chunk_likelihood(log_prob, log_prob_backward, x_at, backend, sigmoid_first, values, x, g, with_rows):
    """A chunk's per-row values (with_rows) and the gradients of its projections' outputs (given the
    row gradients g), by the likelihood ops, whose arguments are the values with x at x_at."""
    if sigmoid_first:
        values = [torch.sigmoid(values[0]), *values[1:]]
    args = [*values[:x_at], x, *values[x_at:]]
    out = log_prob(*args, backend) if with_rows else None
    if g is None:
        return out, None
    grads = log_prob_backward(g, *args, backend)
    grads = [grads] if isinstance(grads, torch.Tensor) else list(grads)
    if sigmoid_first:
        grads[0].mul_(values[0] * (1 - values[0]))  # d sigmoid(a) / da
    return out, grads


def _check(op, h, projections, x, chunk_rows, grad=None):
    require(
        h.dim() == 2 and h.is_floating_point(),
        lambda: f"aevb_fast::{op}: h must be a floating [N, H] tensor, got {tuple(h.shape)} {h.dtype}",
    )
    N, H = h.shape
    D = projections[0][0].shape[0]
    for w, b in projections:
        require(
            w.dim() == 2
            and w.shape == (D, H)
            and w.dtype == h.dtype
            and (b is None or (b.shape == (D,) and b.dtype == h.dtype)),
            lambda: (
                f"aevb_fast::{op}: weights must be [D, H] with H = {H} and biases [D], of h's dtype {h.dtype}, "
                f"got {tuple(w.shape)} {w.dtype} and {None if b is None else (tuple(b.shape), b.dtype)}"
            ),
        )
    require(
        x.dim() == 2 and x.shape[1] == D and (x.shape[0] > 0 or N == 0) and N % max(x.shape[0], 1) == 0,
        lambda: (
            f"aevb_fast::{op}: x must be [Nx, D] with N a multiple of Nx, got {tuple(x.shape)} beside h "
            f"{tuple(h.shape)} and D = {D}"
        ),
    )
    require(
        x.is_floating_point() or x.dtype in (torch.uint8, torch.bool),
        lambda: f"aevb_fast::{op}: x must be floating, uint8 or bool, got {x.dtype}",
    )
    require(chunk_rows >= 1, lambda: f"aevb_fast::{op}: chunk_rows must be >= 1, got {chunk_rows}")
    require(
        grad is None or (grad.shape == (N,) and grad.dtype == row_dtype(h.dtype)),
        lambda: (
            f"aevb_fast::{op}_backward: grad must be [N] {row_dtype(h.dtype)}, got {tuple(grad.shape)} {grad.dtype}"
        ),
    )
    require_one_device(
        op,
        h=h,
        x=x,
        grad=grad,
        **{f"weight{i}": w for i, (w, _) in enumerate(projections)},
        **{f"bias{i}": b for i, (_, b) in enumerate(projections)},
    )


def _pairs(params):
    """[(W, b)] from the flat (W0, b0, W1, b1, ...) of a schema."""
    return list(zip(params[0::2], params[1::2]))


def _flat(h, grad_h, grad_w, grad_b):
    """The op's gradient outputs: grad_h, then each projection's (grad_W, grad_b), an empty tensor
    standing in for what is not made (a schema has no optional outputs; outputs must not alias)."""
    return (
        grad_h if grad_h is not None else h.new_empty(0),
        *(t if t is not None else h.new_empty(0) for pair in zip(grad_w, grad_b) for t in pair),
    )


def _forward(op, likelihood, h, params, x, reduce, with_grads, chunk_rows):
    projections = _pairs(params)
    _check(op, h, projections, x, chunk_rows)
    h = h.contiguous()
    # The functional layer applied autocast's dtype already; inside, the matmuls keep theirs.
    with torch.no_grad(), torch.autocast(h.device.type, enabled=False):
        ones = torch.ones(h.shape[0], dtype=row_dtype(h.dtype), device=h.device) if with_grads else None
        log_prob, *grads = _walk(h, projections, x, ones, chunk_rows, likelihood, True, with_grads)
    if not with_grads:
        grads = (None, [None] * len(projections), [None] * len(projections))
    return log_prob.sum() if reduce else log_prob, *_flat(h, *grads)


def _backward_walk(op, likelihood, grad, h, params, x, chunk_rows):
    projections = _pairs(params)
    _check(op, h, projections, x, chunk_rows, grad)
    with torch.no_grad(), torch.autocast(h.device.type, enabled=False):
        _, grad_h, grad_w, grad_b = _walk(
            h.contiguous(), projections, x, grad.contiguous(), chunk_rows, likelihood, False, True
        )
    # The final gradients, in the inputs' dtypes.
    grad_h = grad_h.to(h.dtype)
    grad_w = [gw.to(w.dtype) for gw, (w, _) in zip(grad_w, projections)]
    grad_b = [None if gb is None else gb.to(b.dtype) for gb, (_, b) in zip(grad_b, projections)]
    return _flat(h, grad_h, grad_w, grad_b)


def _fake(h, params, reduce, with_grads):
    log_prob = h.new_empty(() if reduce else h.shape[:1], dtype=row_dtype(h.dtype))
    if not with_grads:
        return log_prob, *(h.new_empty(0) for _ in range(1 + len(params)))
    # The forward's gradients stay in the accumulation dtype (_walk).
    wide = row_dtype(h.dtype)
    return (
        log_prob,
        h.new_empty(h.shape, dtype=wide),
        *(p.new_empty(p.shape, dtype=wide) if p is not None else h.new_empty(0) for p in params),
    )


def _fake_backward(h, params):
    return h.new_empty(h.shape), *(p.new_empty(p.shape) if p is not None else h.new_empty(0) for p in params)


def _backward(ctx, params_needing, backward_op, grad):
    """The autograd rule of both heads: ctx.inputs (h, params..., x, the options) were saved in
    setup_context; reduce=True scales the gradients made in the forward pass, else the backward op
    walks the chunks again with the per-row gradients."""
    needs = ctx.needs_input_grad[: 1 + params_needing]
    if grad is None or not any(needs):
        return (None,) * len(ctx.needs_input_grad)
    if ctx.reduce:
        saved = ctx.saved_tensors
        if ctx.with_grads is False:
            raise RuntimeError(
                f"aevb_fast::{ctx.op}: the forward ran with with_grads=False, so there is nothing to "
                "backpropagate; call it with with_grads=True"
            )
        # A sum over no rows has a zero gradient whatever the upstream one (a mean's is 0/0). The
        # sums are scaled in float32 and only then rounded to the parameters' dtypes.
        grads = [(g * grad.to(g.dtype) if ctx.rows else g).to(dtype) for g, dtype in zip(saved, ctx.dtypes)]
    else:
        h, *params_and_x = ctx.saved_tensors
        grads = backward_op(grad, h, *params_and_x, *ctx.options, ctx.chunk_rows, ctx.backend)
    grads = [g if need else None for g, need in zip(grads, needs)]
    return (*grads, *(None,) * (len(ctx.needs_input_grad) - len(grads)))


def _setup_context(ctx, op, h, params, x, options, reduce, with_grads, chunk_rows, backend, output):
    ctx.op, ctx.reduce, ctx.options, ctx.chunk_rows, ctx.backend = op, reduce, options, chunk_rows, backend
    ctx.with_grads, ctx.rows = with_grads, h.shape[0]
    ctx.dtypes = [h.dtype, *(p.dtype if p is not None else h.dtype for p in params)]
    ctx.set_materialize_grads(False)
    if reduce:
        ctx.save_for_backward(*output[1:])
    else:
        ctx.save_for_backward(h, *params, x)


def _launchers(impl):
    """One launcher per kernel backend: the matmuls are torch's, the likelihood kernels the backend's."""
    return {b: functools.partial(impl, b) for b in KERNEL_BACKENDS}


def define_head(name: str, values: tuple[str, ...], x_at: int, sigmoid_option: bool, log_prob, log_prob_backward):
    """Defines (linear_<name>_log_prob, linear_<name>_log_prob_backward) for the likelihood ops
    (log_prob, log_prob_backward) whose arguments are `values` with x at x_at. Each value is a
    projection (weight, bias) of the schema, named weight/bias for one value, <value>_weight /
    <value>_bias for several; sigmoid_option adds the option sigmoid_<first value>."""
    op = f"linear_{name}_log_prob"
    names = [("weight", "bias")] if len(values) == 1 else [(f"{v}_weight", f"{v}_bias") for v in values]
    params = ", ".join(f"Tensor {w}, Tensor? {b}" for w, b in names)
    option = f", bool sigmoid_{values[0]}" if sigmoid_option else ""
    n_params, n_options = 2 * len(values), int(sigmoid_option)

    def split(args):
        """(h, the flat (weight, bias) params, x, the options) of the op's arguments from h on."""
        return args[0], args[1 : 1 + n_params], args[1 + n_params], args[2 + n_params : 2 + n_params + n_options]

    def likelihood(backend, options):
        return functools.partial(
            _chunk_likelihood, log_prob, log_prob_backward, x_at, backend, bool(options and options[0])
        )

    def forward(backend, *args):
        h, flat, x, options = split(args)
        reduce, with_grads, chunk_rows = args[2 + n_params + n_options :]
        return _forward(op, likelihood(backend, options), h, flat, x, reduce, with_grads, chunk_rows)

    def backward_walk(backend, grad, *args):
        h, flat, x, options = split(args)
        return _backward_walk(op, likelihood(backend, options), grad, h, flat, x, args[-1])

    backward_op = define(
        f"{op}_backward",
        f"(Tensor grad, Tensor h, {params}, Tensor x{option}, int chunk_rows, str backend) -> "
        f"({', '.join(['Tensor'] * (1 + n_params))})",
        _launchers(backward_walk),
        lambda grad, *args: _fake_backward(args[0], split(args)[1]),
    )

    def setup_context(ctx, inputs, output):
        h, flat, x, options = split(inputs)
        reduce, with_grads, chunk_rows, backend = inputs[2 + n_params + n_options :]
        _setup_context(ctx, op, h, flat, x, options, reduce, with_grads, chunk_rows, backend, output)

    def fake(*args):
        h, flat, _, _ = split(args)
        reduce, with_grads = args[2 + n_params + n_options : 4 + n_params + n_options]
        return _fake(h, flat, reduce, with_grads)

    forward_op = define(
        op,
        f"(Tensor h, {params}, Tensor x{option}, bool reduce, bool with_grads, int chunk_rows, str backend) -> "
        f"({', '.join(['Tensor'] * (2 + n_params))})",
        _launchers(forward),
        fake,
        setup_context,
        lambda ctx, grad, *_: _backward(ctx, n_params, backward_op, grad),
    )
    return forward_op, backward_op
