"""The fused decoder heads (output layer + likelihood, chunked over rows) against nn.functional.linear
followed by the reference likelihood: values and the gradients of h, W and b per dtype, device and
backend, every reduction, chunk sizes that split rows and copies of shared targets, float64
gradcheck, opcheck, torch.compile, autocast, the modules and the argument checks."""

import pytest
import torch
from helpers import CPU_BACKENDS, KERNEL_BACKENDS, TOLERANCES, check_against_reference
from torch.utils._python_dispatch import TorchDispatchMode

import aevb_fast
from aevb_fast import reference as R
from aevb_fast.ops import linear_likelihood as L

ON_KERNELS = pytest.mark.parametrize("device, backend", KERNEL_BACKENDS, ids=[f"{d}-{b}" for d, b in KERNEL_BACKENDS])
# (batch dims of h, H, D, batch dims of x): one row; plain rows; samples sharing targets [L, B];
# targets shared by every row; no rows.
SHAPES = [((1,), 1, 1, (1,)), ((6,), 5, 11, (6,)), ((3, 7), 5, 11, (7,)), ((4,), 3, 6, ()), ((0,), 4, 3, (0,))]
# None: the default rule; 5: chunks inside one copy of x; 8: chunks of whole copies.
CHUNKS = [None, 5, 8]


def _rand(shape, dtype, seed, scale=1.0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=torch.float64) * scale).to(device, dtype)


def _head_inputs(shape, dtype, device, n_layers, target="float"):
    batch, H, D, x_batch = shape
    inputs = dict(h=_rand((*batch, H), dtype, 1, device=device))
    for i in range(n_layers):
        inputs[f"w{i}"] = _rand((D, H), dtype, 2 + 2 * i, 0.5, device)
        inputs[f"b{i}"] = _rand((D,), dtype, 3 + 2 * i, device=device)
    x = torch.rand((*x_batch, D), generator=torch.Generator().manual_seed(9))
    inputs["x"] = {"float": x.to(dtype), "uint8": (x > 0.5).to(torch.uint8), "bool": x > 0.5}[target].to(device)
    return inputs


def _tolerance(dtype):
    """The dtype's tolerance, wider where the layer's matmuls round: a gradient of h or W sums D or N
    products, each rounded to the dtype in half precision (nn.Linear itself, the torch backend
    here, needs 8x on the CPU) and to float32's 24 bits otherwise (hypothesis found 1.3e-5 relative
    on a sum of 17 Gaussian terms that cancel)."""
    scale = {torch.float16: 8, torch.bfloat16: 8, torch.float32: 4}.get(dtype, 1)
    return {name: value * scale for name, value in TOLERANCES[dtype].items()}


def _rounded(v, dtype):
    """v with its value rounded to dtype and its gradient passed through: a layer's output as a
    dtype-precision Linear makes it, in the float64 reference."""
    return v + (v.to(dtype).to(v.dtype) - v).detach()


def _bernoulli_reference(reduction, dtype=torch.float64):
    def reference(h, w0, b0, x):
        logits = _rounded(torch.nn.functional.linear(h, w0, b0), dtype)
        return R.reduce(R.bernoulli_log_prob(logits, x), reduction)

    return reference


def _gaussian_reference(reduction, sigmoid, dtype=torch.float64):
    def reference(h, w0, b0, w1, b1, x):
        mean = _rounded(torch.nn.functional.linear(h, w0, b0), dtype)
        mean = _rounded(torch.sigmoid(mean), dtype) if sigmoid else mean
        logvar = _rounded(torch.nn.functional.linear(h, w1, b1), dtype)
        return R.reduce(R.gaussian_log_prob(x, mean, logvar), reduction)

    return reference


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("chunk_rows", CHUNKS)
def test_bernoulli_head(device, backend, dtype, shape, reduction, chunk_rows):
    def fused(h, w0, b0, x):
        return aevb_fast.linear_bernoulli_log_prob(h, w0, b0, x, reduction, chunk_rows=chunk_rows, backend=backend)

    check_against_reference(
        fused,
        _bernoulli_reference(reduction, dtype),
        _head_inputs(shape, dtype, device, 1),
        grad_names=("h", "w0", "b0"),
        tolerance=_tolerance(dtype),
    )


@pytest.mark.parametrize("target", ["uint8", "bool"])
def test_bernoulli_head_binary_targets(device, backend, target):
    inputs = _head_inputs(((3, 7), 5, 11, (7,)), torch.float32, device, 1, target)
    check_against_reference(
        lambda h, w0, b0, x: aevb_fast.linear_bernoulli_log_prob(h, w0, b0, x, "sum", chunk_rows=5, backend=backend),
        _bernoulli_reference("sum"),
        inputs,
        grad_names=("h", "w0", "b0"),
        tolerance=_tolerance(torch.float32),
    )


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("reduction", ["none", "sum"])
@pytest.mark.parametrize("activation", ["identity", "sigmoid"])
@pytest.mark.parametrize("chunk_rows", [None, 5])
def test_gaussian_head(device, backend, dtype, shape, reduction, activation, chunk_rows):
    def fused(h, w0, b0, w1, b1, x):
        return aevb_fast.linear_gaussian_log_prob(
            h, w0, b0, w1, b1, x, reduction, mean_activation=activation, chunk_rows=chunk_rows, backend=backend
        )

    check_against_reference(
        fused,
        _gaussian_reference(reduction, activation == "sigmoid", dtype),
        _head_inputs(shape, dtype, device, 2),
        grad_names=("h", "w0", "b0", "w1", "b1"),
        tolerance=_tolerance(dtype),
    )


def test_heads_without_bias(device, backend):
    inputs = _head_inputs(((3, 7), 5, 11, (7,)), torch.float32, device, 2)
    inputs["b0"] = inputs["b1"] = None
    for reduction in ("none", "sum"):
        check_against_reference(
            lambda h, w0, b0, w1, b1, x: aevb_fast.linear_gaussian_log_prob(
                h, w0, b0, w1, b1, x, reduction, chunk_rows=5, backend=backend
            ),
            _gaussian_reference(reduction, False),
            inputs,
            grad_names=("h", "w0", "w1"),
            tolerance=_tolerance(torch.float32),
        )
        check_against_reference(
            lambda h, w0, b0, x: aevb_fast.linear_bernoulli_log_prob(
                h, w0, b0, x, reduction, chunk_rows=5, backend=backend
            ),
            _bernoulli_reference(reduction),
            {k: inputs[k] for k in ("h", "w0", "b0", "x")},
            grad_names=("h", "w0"),
            tolerance=_tolerance(torch.float32),
        )


@ON_KERNELS
@pytest.mark.parametrize("reduction", ["none", "sum"])
def test_gradcheck_heads(device, backend, reduction):
    inputs = _head_inputs(((2, 3), 4, 5, (3,)), torch.float64, device, 2)
    inputs = {k: v.requires_grad_() if k != "x" else v for k, v in inputs.items()}
    h, w0, b0, w1, b1, x = inputs.values()
    assert torch.autograd.gradcheck(
        lambda h, w, b: aevb_fast.linear_bernoulli_log_prob(h, w, b, x, reduction, chunk_rows=2, backend=backend),
        (h, w0, b0),
    )
    assert torch.autograd.gradcheck(
        lambda h, w0, b0, w1, b1: aevb_fast.linear_gaussian_log_prob(
            h, w0, b0, w1, b1, x, reduction, mean_activation="sigmoid", chunk_rows=4, backend=backend
        ),
        (h, w0, b0, w1, b1),
    )


def _op_samples():
    ops = torch.ops.aevb_fast
    for device, backend in KERNEL_BACKENDS:
        inputs = _head_inputs(((6,), 4, 5, (3,)), torch.float32, device, 2)
        h, w0, b0, w1, b1, x = (v.requires_grad_() if k != "x" else v for k, v in inputs.items())
        for reduce in (False, True):
            yield ops.linear_bernoulli_log_prob.default, (h, w0, b0, x, reduce, reduce, 2, backend)
            yield ops.linear_gaussian_log_prob.default, (h, w0, b0, w1, None, x, True, reduce, reduce, 4, backend)
        g = torch.randn(6, device=device)
        yield ops.linear_bernoulli_log_prob_backward.default, (g, h.detach(), w0.detach(), b0.detach(), x, 2, backend)
        yield (
            ops.linear_gaussian_log_prob_backward.default,
            (g, h.detach(), w0.detach(), None, w1.detach(), b1.detach(), x, False, 3, backend),
        )


@pytest.mark.parametrize(
    "op, args",
    list(_op_samples()),
    ids=lambda v: str(v) if isinstance(v, torch._ops.OpOverload) else f"{v[0].device.type}-{v[-1]}",
)
def test_opcheck(op, args):
    torch.library.opcheck(op, args)


@ON_KERNELS
@pytest.mark.parametrize("compile_backend", ["inductor", "aot_eager"])
def test_heads_compile_without_graph_breaks(device, backend, compile_backend):
    decoder = torch.nn.Linear(3, 4).to(device)
    head = aevb_fast.FusedLinearBernoulli(4, 6, reduction="mean", chunk_rows=2, backend=backend).to(device)
    gaussian = aevb_fast.FusedLinearGaussian(4, 6, mean_activation="sigmoid", backend=backend).to(device)
    z, x = torch.randn(2, 5, 3, device=device), torch.rand(5, 6, device=device)

    def loss(z, x):
        h = torch.tanh(decoder(z))
        return -head(h, x) - gaussian(h, x).logsumexp(0).mean()

    def step(fn):
        for p in (*decoder.parameters(), *head.parameters(), *gaussian.parameters()):
            p.grad = None
        value = fn(z, x)
        value.backward()
        return value.detach(), [
            p.grad.clone() for p in (*decoder.parameters(), *head.parameters(), *gaussian.parameters())
        ]

    expected, expected_grads = step(loss)
    value, grads = step(torch.compile(loss, fullgraph=True, backend=compile_backend))
    torch.testing.assert_close(value, expected)
    for g, e in zip(grads, expected_grads):
        torch.testing.assert_close(g, e)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_heads_follow_autocast(backend):
    # As nn.Linear under autocast: the matmuls in bfloat16 (the likelihood's math in float32), and
    # float32 parameters receive float32 gradients.
    inputs = _head_inputs(((3, 7), 16, 24, (7,)), torch.float32, "cpu", 1)
    h, w, b, x = (v.requires_grad_() if k != "x" else v for k, v in inputs.items())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = aevb_fast.linear_bernoulli_log_prob(h, w, b, x, "sum", chunk_rows=4, backend=backend)
        expected = aevb_fast.bernoulli_log_prob(torch.nn.functional.linear(h, w, b), x, "sum", backend="torch")
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, expected, rtol=1e-3, atol=1e-3)
    grads = torch.autograd.grad(out, (h, w, b))
    expected_grads = torch.autograd.grad(expected, (h, w, b))
    for g, e in zip(grads, expected_grads):
        assert g.dtype == torch.float32
        torch.testing.assert_close(g, e, rtol=2e-2, atol=2e-2)


def test_half_precision_sums_do_not_overflow(backend):
    # 70,000 rows: the sums over rows of a unit upstream gradient pass float16's range (65504)
    # before "mean" scales them down; they are made in float32.
    h = torch.ones(70_000, 4, dtype=torch.float16, requires_grad=True)
    w = torch.zeros(3, 4, dtype=torch.float16, requires_grad=True)
    b = torch.zeros(3, dtype=torch.float16, requires_grad=True)
    out = aevb_fast.linear_bernoulli_log_prob(
        h, w, b, torch.ones(70_000, 3, dtype=torch.float16), "mean", chunk_rows=30_000, backend=backend
    )
    grad_w, grad_b = torch.autograd.grad(out, (w, b))
    # d/db = mean of (x - sigmoid(0)) = 1/2, d/dW = that times h = 1/2
    torch.testing.assert_close(grad_w, torch.full((3, 4), 0.5, dtype=torch.float16), rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(grad_b, torch.full((3,), 0.5, dtype=torch.float16), rtol=1e-3, atol=1e-3)


def test_chunks_cover_every_row_once_with_its_targets():
    for n, nx, rows in [(12, 12, 5), (21, 7, 5), (21, 7, 8), (21, 7, 100), (6, 1, 4), (0, 0, 3), (8, 2, 1)]:
        covered = []
        for h_rows, x_rows in L._chunks(n, nx, rows):
            span = range(n)[h_rows]
            assert 0 < len(span) <= max(rows, nx)
            targets = range(nx)[x_rows]
            # the kernels read x_chunk[r % len(x_chunk)] for the chunk's r-th row
            assert [targets[r % len(targets)] for r in range(len(span))] == [i % nx for i in span]
            covered += span
        assert covered == list(range(n))


class _AevbOps(TorchDispatchMode):
    """Names the aevb_fast ops that reach the dispatcher."""

    def __init__(self):
        super().__init__()
        self.names = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if str(func).startswith("aevb_fast."):
            self.names.append(str(func).split(".")[1])
        return func(*args, **(kwargs or {}))


@pytest.mark.skipif("cpu" not in CPU_BACKENDS, reason="the cpu kernels are not built")
@pytest.mark.parametrize(
    "dtype, chunk_rows, op",
    [
        (torch.float32, None, "bernoulli_log_prob"),  # one chunk: the Linear and the likelihood op
        (torch.float64, 6, "bernoulli_log_prob"),
        (torch.float32, 5, "linear_bernoulli_log_prob"),  # two chunks
        (torch.bfloat16, None, "linear_bernoulli_log_prob"),  # half precision: the op's float32 gradient sums
    ],
    ids=str,
)
def test_heads_of_one_chunk_run_the_linear_and_the_likelihood(dtype, chunk_rows, op):
    inputs = _head_inputs(((6,), 5, 11, (6,)), dtype, "cpu", 1)
    with _AevbOps() as log:
        out = aevb_fast.linear_bernoulli_log_prob(*inputs.values(), "sum", chunk_rows=chunk_rows, backend="cpu")
    assert log.names[0] == op
    expected = _bernoulli_reference("sum", dtype)(*(t.double() for t in inputs.values()))
    torch.testing.assert_close(out.double(), expected, **_tolerance(dtype))


def test_chunk_rule():
    # A chunk's logits hold CHUNK_PER_INPUT times as many elements as h, never fewer than MIN_CHUNK_ELEMENTS.
    assert L.chunk_rows_for(8192, 500, 12288) == 4 * 8192 * 500 // 12288
    assert L.chunk_rows_for(100, 500, 784) == 100
    assert L.chunk_rows_for(10, 2, 1 << 30) == 1


def test_modules():
    torch.manual_seed(0)
    head = aevb_fast.FusedLinearBernoulli(5, 7, reduction="sum", chunk_rows=3)
    assert isinstance(head, torch.nn.Linear)
    assert head.state_dict().keys() == torch.nn.Linear(5, 7).state_dict().keys()
    h, x = torch.randn(4, 5), torch.rand(4, 7)
    torch.testing.assert_close(
        head(h, x), aevb_fast.bernoulli_log_prob(torch.nn.functional.linear(h, head.weight, head.bias), x, "sum")
    )
    gaussian = aevb_fast.FusedLinearGaussian(5, 7, bias=False, mean_activation="sigmoid")
    assert set(gaussian.state_dict()) == {"mean.weight", "logvar.weight"}
    expected = aevb_fast.gaussian_log_prob(x, torch.sigmoid(gaussian.mean(h)), gaussian.logvar(h))
    torch.testing.assert_close(gaussian(h, x), expected)
    assert "reduction='sum', chunk_rows=3" in repr(head)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: aevb_fast.FusedLinearBernoulli(0, 3), r"in_features must be a positive int, got 0"),
        (lambda: aevb_fast.FusedLinearBernoulli(2, 3, reduction="avg"), r"reduction='avg' is not supported"),
        (
            lambda: aevb_fast.FusedLinearBernoulli(2, 3, chunk_rows=0),
            r"chunk_rows must be a positive int or None, got 0",
        ),
        (
            lambda: aevb_fast.FusedLinearGaussian(2, 3, mean_activation="tanh"),
            r"mean_activation='tanh' is not supported; expected one of 'identity', 'sigmoid'",
        ),
        (lambda: aevb_fast.FusedLinearGaussian(2, 3, backend="gpu"), r"backend='gpu' is not a backend"),
    ],
)
def test_module_settings_are_checked(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_arguments_are_checked():
    h, w, b, x = torch.randn(4, 5), torch.randn(7, 5), torch.randn(7), torch.rand(4, 7)
    f = aevb_fast.linear_bernoulli_log_prob
    with pytest.raises(ValueError, match=r"h must be \[\.\.\., 5\] for weights \[7, 5\], got \[4, 6\]"):
        f(torch.randn(4, 6), w, b, x)
    with pytest.raises(
        ValueError, match=r"bias must be \[7, 5\] \(weights\) or \[7\] \(biases\) like the first weight, got \[6\]"
    ):
        f(h, w, torch.randn(6), x)
    with pytest.raises(ValueError, match=r"x must be \[\.\.\., 7\] with its leading dims the last ones of h's \[4\]"):
        f(h, w, b, torch.rand(3, 7))
    with pytest.raises(ValueError, match=r"x requires grad, but the fused head gives no gradient for the targets"):
        f(h, w, b, x.clone().requires_grad_())
    with pytest.raises(
        TypeError,
        match=r"h, weights and biases must share one dtype \(as for nn.Linear\), got h "
        r"torch.float64, weight torch.float32, bias torch.float32",
    ):
        f(h.double(), w, b, x)
    with pytest.raises(ValueError, match=r"chunk_rows must be a positive int or None, got -1"):
        f(h, w, b, torch.rand(4, 7), chunk_rows=-1)
    with pytest.raises(ValueError, match=r"reduction='avg' is not supported"):
        f(h, w, b, torch.rand(4, 7), "avg")
    with pytest.raises(TypeError, match=r"x must be a floating, uint8 or bool tensor, got \[4, 7\] torch.int64"):
        f(h, w, b, torch.ones(4, 7, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"expected tensors on one device, got h on cpu, weight on meta"):
        f(h, w.to("meta"), b, torch.rand(4, 7))


@pytest.mark.skipif("cpu" not in CPU_BACKENDS, reason="the cpu kernels are not built")
def test_op_checks_and_forward_without_gradients():
    ops = torch.ops.aevb_fast
    h, w, b, x = torch.randn(4, 5), torch.randn(7, 5), torch.randn(7), torch.rand(4, 7)
    with pytest.raises(ValueError, match=r"x must be \[Nx, D\] with N a multiple of Nx, got \(3, 7\)"):
        ops.linear_bernoulli_log_prob(h, w, b, torch.rand(3, 7), True, True, 2, "cpu")
    with pytest.raises(ValueError, match=r"chunk_rows must be >= 1, got 0"):
        ops.linear_bernoulli_log_prob(h, w, b, x, True, True, 0, "cpu")
    h.requires_grad_()
    out = ops.linear_bernoulli_log_prob(h, w, b, x, True, False, 2, "cpu")[0]
    with pytest.raises(
        RuntimeError, match=r"the forward ran with with_grads=False, so there is nothing to backpropagate"
    ):
        out.backward()
