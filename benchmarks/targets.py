"""The targets the project set itself, checked against one run's measurements: each becomes a line
of the results' Targets table with the measured value and whether it is met ("not measured" where
the run did not cover it, e.g. --sizes paper and a large-size target).

Ratios are of medians over the rounds: "faster than" is the provider's forward + backward time over
aevb_fast's; the memory limit is the fused kernels' own traffic at a warm copy's bandwidth (see
run.Row.memory_limit). aevb_fast is the first fused backend measured, the one auto picks.
"""

from dataclasses import dataclass

from . import cases


@dataclass
class Outcome:
    target: str
    measured: str  # the value, or why there is none
    met: bool | None  # None: not checked in this run


# (device type, op, shape, dtype (None: each dtype measured), provider, at least): aevb_fast's
# forward + backward speed-up over the provider.
SPEEDUPS = [
    ("cpu", "bernoulli", (4096, 12288), "float32", "torch.compile", 3.0),
    ("cpu", "bernoulli", (4096, 12288), "float32", "F.bce_with_logits", 8.0),
    ("cpu", "reparameterize", (65536, 256), None, "torch.compile", 2.0),
    ("cpu", "reparameterize", (65536, 256), None, "eager", 5.0),
    ("cpu", "bernoulli", (100, 784), None, "F.bce_with_logits", 1.5),
    ("cpu", "bernoulli", (100, 784), None, "eager", 1.0),
    ("cpu", "gaussian", (100, 560), None, "eager", 1.0),
    ("cpu", "reparameterize", (100, 20), None, "eager", 1.3),
    ("cpu", "bernoulli_head", (8192, 500, 12288), None, "eager", 1.0),
    ("cpu", "continuous_bernoulli", (4096, 12288), "float32", "torch.distributions", 5.0),
    ("cpu", "continuous_bernoulli", (4096, 12288), "float32", "torch.distributions + compile", 2.0),
    ("cpu", "discretized_logistic_mixture", (256, 3072), "float32", "torch.compile", 3.0),
    ("cuda", "bernoulli", (4096, 12288), None, "torch.compile", 1.3),
    ("cuda", "bernoulli", (4096, 12288), None, "eager", 3.0),
    ("cuda", "reparameterize", (65536, 256), None, "torch.compile", 1.5),
    ("cuda", "reparameterize", (65536, 256), None, "eager", 4.0),
    ("cuda", "bernoulli_head", (8192, 500, 12288), None, "torch.compile", 1.2),
]
# (device type, op, shape, dtype, at most): aevb_fast's forward + backward over the memory limit.
LIMITS = [
    ("cpu", "bernoulli", (4096, 12288), "float32", 1.5),
    ("cuda", "bernoulli", (4096, 12288), None, 1.25),
]
# (device type, op, shape, dtype, at most): aevb_fast's peak memory over eager's.
MEMORY = [
    ("cpu", "bernoulli_head", (8192, 500, 12288), None, 0.40),
    ("cpu", "discretized_logistic_mixture", (256, 3072), None, 0.20),
    ("cuda", "bernoulli_head", (8192, 500, 12288), None, 0.40),
]
CALL_OVER_EAGER = 0.7  # every public function at one element: time per call over eager's, at most
CALL_OVER_EXAMPLE = 0.5  # vae_loss at one element over the PyTorch VAE example's loss_function, at most
TRAIN_STEP = 1.15  # the training step's samples/s over the reference loss's, at least
LOADED_SPEEDUP = 1.0  # under load: every op at the paper's size against eager, at least
LOADED_SLOWDOWN = 2.0  # under load: every op at the paper's size over its unloaded time, at most


def _first(rows, provider=None):
    """The row of `provider`, or aevb_fast's (the first fused backend) without one."""
    return next(
        (r for r in rows if (r.provider == provider if provider else r.provider.startswith("aevb_fast["))), None
    )


def _name(op: str, shape, dtype) -> str:
    return f"{op} {cases.dims(op, shape)}" + (f" {dtype}" if dtype else "")


def _outcome(target: str, value: float | None, bound: float, at_least: bool, shown: str = "{:.2f}x") -> Outcome:
    if value is None:
        return Outcome(target, "not measured", None)
    return Outcome(target, shown.format(value), value >= bound if at_least else value <= bound)


def _speedup(case, provider) -> float | None:
    fused, other = _first(case), _first(case, provider)
    return other.total.median / fused.total.median if fused and other else None


def check(device_type: str, rows, calls, steps, loaded: bool = False, unloaded: dict | None = None) -> list[Outcome]:
    """rows: run.Row of the op cases; calls: overhead.CallRow; steps: {dtype: {batch: {loss: samples/s}}};
    unloaded: {(op, shape, dtype, provider): forward + backward seconds} of the unloaded run, None
    where there is none (checked only when loaded)."""
    dtypes = sorted({r.dtype for r in rows}) or [None]

    def each(device, dtype):
        return [] if device != device_type else [dtype] if dtype else dtypes

    def case(op, shape, dtype):
        return [r for r in rows if r.op == op and tuple(r.shape) == tuple(shape) and r.dtype == dtype]

    out = []
    for device, op, shape, dtype, provider, bound in SPEEDUPS:
        for d in each(device, dtype):
            out.append(
                _outcome(
                    f"{_name(op, shape, d)}: >= {bound}x faster than {provider}",
                    _speedup(case(op, shape, d), provider),
                    bound,
                    True,
                )
            )
    for device, op, shape, dtype, bound in LIMITS:
        for d in each(device, dtype):
            fused = _first(case(op, shape, d))
            out.append(
                _outcome(
                    f"{_name(op, shape, d)}: <= {bound}x the memory limit",
                    fused.over_limit if fused else None,
                    bound,
                    False,
                )
            )
    for device, op, shape, dtype, bound in MEMORY:
        for d in each(device, dtype):
            fused, eager = _first(case(op, shape, d)), _first(case(op, shape, d), "eager")
            value = fused.peak_bytes / eager.peak_bytes if fused and eager and eager.peak_bytes else None
            out.append(
                _outcome(f"{_name(op, shape, d)}: peak memory <= {bound:.0%} of eager's", value, bound, False, "{:.1%}")
            )
    out += _call_targets(calls)
    for dtype, batches in steps.items():
        for batch, rates in batches.items():
            fused = next((v for k, v in rates.items() if k.startswith("aevb_fast")), None)
            out.append(
                _outcome(
                    f"training step, batch {batch}, {dtype}: >= {TRAIN_STEP}x the reference's samples/s",
                    fused / rates["reference"] if fused else None,
                    TRAIN_STEP,
                    True,
                )
            )
    if loaded:
        for op in cases.OPS:
            shape = cases.SIZES[op]["paper"]
            for d in dtypes:
                here = case(op, shape, d)
                out.append(
                    _outcome(
                        f"{_name(op, shape, d)} under load: >= {LOADED_SPEEDUP}x faster than eager",
                        _speedup(here, "eager"),
                        LOADED_SPEEDUP,
                        True,
                    )
                )
                out.append(
                    _against_unloaded(
                        f"{_name(op, shape, d)} under load: <= {LOADED_SLOWDOWN}x its unloaded time",
                        _first(here),
                        unloaded,
                    )
                )
    return out


def _call_targets(calls) -> list[Outcome]:
    out = []
    dtypes = sorted({c.dtype for c in calls}) or [None]
    for function in cases.FUNCTIONS:
        for d in dtypes:
            one = [c for c in calls if c.function == function and c.dtype == d and set(c.shape) == {1}]
            fused = _first(one)
            where = f"{function}, one element" + (f", {d}" if d else "")
            for provider, bound, whose in [("eager", CALL_OVER_EAGER, "eager's")] + (
                [("pytorch example", CALL_OVER_EXAMPLE, "the PyTorch VAE example's loss_function")]
                if function == "vae_loss"
                else []
            ):
                other = _first(one, provider)
                out.append(
                    _outcome(
                        f"{where}: time per call <= {bound}x {whose}",
                        fused.time.median / other.time.median if fused and other else None,
                        bound,
                        False,
                    )
                )
    return out


def _against_unloaded(target: str, fused, unloaded: dict | None) -> Outcome:
    if fused is None:
        return Outcome(target, "not measured", None)
    if unloaded is None:
        return Outcome(target, "no unloaded run", None)
    before = unloaded.get((fused.op, tuple(fused.shape), fused.dtype, fused.provider))
    if before is None:
        return Outcome(target, "not in the unloaded run", None)
    return _outcome(target, fused.total.median / before, LOADED_SLOWDOWN, False)
