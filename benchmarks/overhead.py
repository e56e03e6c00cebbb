"""Per-call overhead: forward + backward of every public fused function on one-element inputs, where
the call is everything and the arithmetic nothing, against the eager math of the same function (the
reference) and the code a user would otherwise write: F.binary_cross_entropy_with_logits for the
Bernoulli term, the PyTorch VAE example's. Also vae_loss at the example's minibatch, [128, 784] +
[128, 20], against the example's loss_function.

A call here is what a training step does: gradients set to None, the forward, the backward. A
sample is a loop of as many calls as last SAMPLE_SECONDS (as timeit does: a single call of some
microseconds would measure the timer), the providers interleaved round by round; a call's time is
the median over the rounds.
"""

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from . import cases
from .timing import Timing, calls_per_sample, clock, interleaved

PEERS = ("eager", "F.bce_with_logits", "pytorch example")
SAMPLE_SECONDS = 0.02


@dataclass
class CallRow:
    function: str
    op: str  # the case's
    shape: tuple[int, ...]
    dtype: str
    provider: str
    time: Timing  # seconds per call
    calls: int  # calls per sample

    @property
    def dims(self) -> str:
        return cases.dims(self.op, self.shape)


def _call(case: cases.Case, provider):
    def call():
        for leaf in case.leaves:
            leaf.grad = None
        torch.autograd.backward(provider(), case.upstream)

    return call


def _measure(function: str, case: cases.Case, rounds: int, seconds: float) -> list[CallRow]:
    device = case.device
    calls = {
        name: _call(case, provider)
        for name, provider in case.providers.items()
        if name.startswith("aevb_fast[") or name in PEERS
    }
    # Finding the loop's length calls each provider dozens of times: its warm-up.
    counts = {name: calls_per_sample(call, device, seconds) for name, call in calls.items()}
    timings = interleaved(
        {name: (lambda call=call, n=counts[name]: {"call": clock(call, device, n)[0]}) for name, call in calls.items()},
        rounds,
        warmup=0,
    )
    return [
        CallRow(
            function,
            case.op,
            case.shape,
            str(case.dtype).removeprefix("torch."),
            name,
            timings[name]["call"],
            counts[name],
        )
        for name in calls
    ]


def measure(
    device: torch.device, dtype: torch.dtype, rounds: int, seconds: float = SAMPLE_SECONDS
) -> Iterator[list[CallRow]]:
    """Each function's rows as it is measured, the example's minibatch last."""
    for function, (build, shape) in cases.FUNCTIONS.items():
        yield _measure(function, build(shape, dtype, device), rounds, seconds)
    yield _measure("vae_loss", cases.vae_loss(cases.EXAMPLE_SHAPE, dtype, device), rounds, seconds)


def write_csv(rows: list[CallRow], path: Path) -> None:
    eager = {(r.function, r.shape, r.dtype): r.time.median for r in rows if r.provider == "eager"}
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            [
                "function",
                "shape",
                "dtype",
                "provider",
                "us_per_call",
                "p25_us",
                "p75_us",
                "calls_per_sample",
                "over_eager",
            ]
        )
        for r in rows:
            writer.writerow(
                [
                    r.function,
                    "x".join(map(str, r.shape)),
                    r.dtype,
                    r.provider,
                    *(f"{v * 1e6:.2f}" for v in (r.time.median, r.time.low, r.time.high)),
                    r.calls,
                    f"{r.time.median / eager[r.function, r.shape, r.dtype]:.3f}",
                ]
            )
