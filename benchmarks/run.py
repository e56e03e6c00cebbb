"""The benchmark runner: every fused op against every provider, forward, backward and both, at the
paper's sizes up to large ones, the per-call overhead of every public function, and one training
step of the paper's model; writes markdown tables, CSVs and PNG plots to
benchmarks/results/<device>/ (<device>-loaded/ with --load).

    python -m benchmarks [--device cpu|cuda] [--dtype float32 [bfloat16]] [--sizes paper large]
                         [--rounds 7] [--call-rounds 15] [--load]

--sizes takes any of paper, medium, large, full (the three) and tiny (small shapes: a dry run in
seconds, used by the tests and the GPU check's dry mode). --load runs everything beside one busy
process (load.py). Timings are interleaved across providers (timing.py). Ctrl-C or SIGTERM ends the
run early with what it measured written, marked partial.
"""

import argparse
import contextlib
import csv
import os
import platform
import re
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

import aevb_fast
from aevb_fast.ops._native import native

from . import cases, load, overhead, report, targets, train_step
from .timing import Timing, clock, interleaved, peak_memory, warm_copy

RESULTS = Path(__file__).resolve().parent / "results"
# The training step's batch for each size name: the paper's minibatch, and a large one.
BATCHES = {"tiny": 8, "paper": 100, "medium": 1000, "large": 1000}


@dataclass
class Row:
    """One provider on one case."""

    case: str
    op: str
    size: str
    shape: tuple[int, ...]
    dtype: str
    provider: str
    forward: Timing
    backward: Timing
    total: Timing
    copy: Timing  # the warm copy of the case's largest input, timed in the same rounds
    essential_bytes: int
    kernel_bytes: int
    copy_bytes: int
    peak_bytes: int

    @property
    def bandwidth(self) -> float:
        """Effective bandwidth in bytes/s: the op's essential traffic over forward + backward."""
        return self.essential_bytes / self.total.median

    @property
    def copy_bandwidth(self) -> float:
        return self.copy_bytes / self.copy.best

    @property
    def memory_limit(self) -> float:
        """Seconds the fused kernels' own traffic takes at the warm copy's bandwidth: no implementation
        that reads and writes what they do is faster."""
        return self.kernel_bytes / self.copy_bandwidth

    @property
    def over_limit(self) -> float:
        return self.total.median / self.memory_limit


@dataclass
class Measured:
    """What the run has measured so far: all of it is written, even when the run is stopped."""

    rows: list[Row] = field(default_factory=list)
    calls: list[overhead.CallRow] = field(default_factory=list)
    steps: dict[str, dict[int, dict[str, float]]] = field(default_factory=dict)


class Stopped(KeyboardInterrupt):
    """Ctrl-C or SIGTERM, raised wherever the run is, as Python raises KeyboardInterrupt (so that
    code which handles errors lets it through)."""


class StopRequest:
    """The signal handler for Ctrl-C and SIGTERM: keeps the signal, so that what the run measured is
    written even where library code turned the exception into another one or swallowed it."""

    def __init__(self):
        self.signum: int | None = None

    def __call__(self, signum, frame):
        self.signum = signum
        self.check()

    def check(self) -> None:
        if self.signum is not None:
            raise Stopped(self.name)

    @property
    def name(self) -> str | None:
        return None if self.signum is None else signal.Signals(self.signum).name


def machine(device: torch.device) -> str:
    """The device's name as the results folder spells it."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or "cpu"
        try:
            with open("/proc/cpuinfo") as cpuinfo:
                name = next(line.split(":", 1)[1] for line in cpuinfo if line.startswith("model name"))
        except (OSError, StopIteration):
            pass
        name = f"cpu {name} {torch.get_num_threads()} threads"
    return re.sub(r"[^A-Za-z0-9.]+", "-", name.strip()).strip("-").lower()


def measure_case(case: cases.Case, size: str, rounds: int, warmup: int) -> list[Row]:
    device = case.device
    # On a GPU a small op takes microseconds: time several calls per sample.
    calls_per_sample = 10 if device.type == "cuda" and case.shape[0] * case.shape[1] < (1 << 22) else 1

    def round_of(provider):
        def run():
            for leaf in case.leaves:
                leaf.grad = None
            forward, outputs = clock(lambda: [provider() for _ in range(calls_per_sample)], device)
            backward, _ = clock(lambda: [torch.autograd.backward(out, case.upstream) for out in outputs], device)
            n = calls_per_sample
            return {"forward": forward / n, "backward": backward / n, "total": (forward + backward) / n}

        return run

    functions = {name: round_of(provider) for name, provider in case.providers.items()}
    functions["warm copy"] = warm_copy(case.copy_source, device, calls_per_sample)
    timings = interleaved(functions, rounds, warmup)
    copy = timings.pop("warm copy")["copy"]

    def peak(provider):
        for leaf in case.leaves:
            leaf.grad = None
        # aevb_fast's CPU output cache would hand out memory already resident: weigh without it.
        with no_output_cache():
            return peak_memory(lambda: torch.autograd.backward(provider(), case.upstream), device)

    copy_bytes = 2 * case.copy_source.numel() * case.copy_source.element_size()
    return [
        Row(
            case.label,
            case.op,
            size,
            case.shape,
            str(case.dtype).removeprefix("torch."),
            name,
            t["forward"],
            t["backward"],
            t["total"],
            copy,
            case.essential_bytes,
            case.kernel_bytes,
            copy_bytes,
            peak(provider),
        )
        for name, provider in case.providers.items()
        for t in [timings[name]]
    ]


@contextlib.contextmanager
def no_output_cache():
    limit = native.set_cache_limit(0) if native is not None else None
    try:
        yield
    finally:
        if native is not None:
            native.set_cache_limit(limit)


def header(
    device: torch.device,
    args,
    started: tuple,
    ended: tuple | None,
    busy: load.Load | None,
    stopped: str | None,
    measured: Measured,
) -> str:
    where = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{machine(device)}; {torch.get_num_threads()} threads"
    )
    triton = "not installed"
    try:
        import triton

        triton = triton.__version__
    except ImportError:
        pass
    lines = [
        f"{where}; torch {torch.__version__}; triton {triton}; aevb_fast {aevb_fast.__version__}; "
        f"{time.strftime('%Y-%m-%d')}",
        f"Sizes {', '.join(args.sizes)}; ops: median of {args.rounds} interleaved rounds after {args.warmup} "
        f"of warm-up; per call: median of {args.call_rounds} rounds of loops of >= "
        f"{overhead.SAMPLE_SECONDS * 1e3:.0f} ms.",
    ]
    end = "" if ended is None else f", {load.averages(ended)} at the end"
    if busy is None:
        lines.append(f"Load averages (1/5/15 min): {load.averages(started)} at the start{end}.")
    else:
        lines.append(
            f"Under load: one busy process (a pure-Python loop, one core's worth, pid {busy.pid}) ran from "
            f"before the first measurement to the end. Load averages (1/5/15 min): "
            f"{load.averages(busy.before)} before it started{end}."
        )
    if stopped is not None:
        op_cases = len({(r.case, r.dtype) for r in measured.rows})
        call_cases = len({(c.function, c.shape, c.dtype) for c in measured.calls})
        steps = sum(map(len, measured.steps.values()))
        lines.append(
            f"**Partial results**: stopped by {stopped}, having measured {op_cases} op cases, {call_cases} "
            f"per-call cases and {steps} training steps."
        )
    return "\n\n".join(lines)


def write_csv(rows: list[Row], path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            [
                "op",
                "size",
                "shape",
                "dtype",
                "provider",
                "forward_ms",
                "backward_ms",
                "total_ms",
                "total_p25_ms",
                "total_p75_ms",
                "warm_copy_ms",
                "copy_bandwidth_GBps",
                "memory_limit_ms",
                "total_over_limit",
                "bandwidth_GBps",
                "peak_MB",
            ]
        )
        for r in rows:
            writer.writerow(
                [
                    r.op,
                    r.size,
                    "x".join(map(str, r.shape)),
                    r.dtype,
                    r.provider,
                    *(
                        f"{v * 1e3:.4f}"
                        for v in (
                            r.forward.median,
                            r.backward.median,
                            r.total.median,
                            r.total.low,
                            r.total.high,
                            r.copy.best,
                        )
                    ),
                    f"{r.copy_bandwidth / 1e9:.3f}",
                    f"{r.memory_limit * 1e3:.4f}",
                    f"{r.over_limit:.3f}",
                    f"{r.bandwidth / 1e9:.3f}",
                    f"{r.peak_bytes / 2**20:.1f}",
                ]
            )


def read_totals(path: Path) -> dict | None:
    """{(op, shape, dtype, provider): forward + backward seconds} of a results.csv, None without one."""
    if not path.is_file():
        return None
    with open(path, newline="") as f:
        return {
            (r["op"], tuple(int(v) for v in r["shape"].split("x")), r["dtype"], r["provider"]): float(r["total_ms"])
            / 1e3
            for r in csv.DictReader(f)
        }


def measure(args, device: torch.device, dtypes: list[str], measured: Measured, check: Callable[[], None]) -> None:
    """Runs everything, adding to `measured` as each case, function and step is done; check() between
    them ends the run early if it was asked to stop."""
    batches = sorted({BATCHES[size] for size in cases.size_names(args.sizes)})
    for name in dtypes:
        dtype = getattr(torch, name)
        for size, case in cases.cases(device, dtype, args.sizes, args.ops):
            rows = measure_case(case, size, args.rounds, args.warmup)
            measured.rows += rows
            print(report.case_table(rows), flush=True)
            del case
            check()
        for rows in overhead.measure(device, dtype, args.call_rounds):
            measured.calls += rows
            check()
        print(report.calls_table([c for c in measured.calls if c.dtype == name]), flush=True)
        for batch in batches:
            rates = train_step.measure(device, dtype, batch, args.rounds, args.warmup)
            measured.steps.setdefault(name, {})[batch] = rates
            check()
        if name in measured.steps:
            print(report.train_table(measured.steps[name]), flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--dtype",
        nargs="+",
        default=None,
        choices=["float32", "bfloat16"],
        help="default: float32 on CPU, float32 and bfloat16 on GPU",
    )
    parser.add_argument(
        "--sizes",
        nargs="+",
        default=["full"],
        choices=["tiny", *cases.SIZE_NAMES, "full"],
        help="size sets to run (default: full, that is paper, medium and large)",
    )
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds per op case and training step")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--call-rounds", type=int, default=15, help="rounds of the per-call overhead's loops")
    parser.add_argument("--ops", nargs="+", default=list(cases.OPS), choices=cases.OPS)
    parser.add_argument("--load", action="store_true", help="run beside one busy process")
    parser.add_argument(
        "--out", type=Path, default=None, help="default: benchmarks/results/<device>, or <device>-loaded with --load"
    )
    args = parser.parse_args(argv)
    if min(args.rounds, args.call_rounds) < 1 or args.warmup < 0:
        parser.error("--rounds and --call-rounds take 1 or more, --warmup 0 or more")
    device = torch.device(args.device)
    dtypes = args.dtype or (["float32", "bfloat16"] if device.type == "cuda" else ["float32"])
    name = machine(device)
    out = args.out or RESULTS / (f"{name}-loaded" if args.load else name)
    out.mkdir(parents=True, exist_ok=True)

    measured, stop, started = Measured(), StopRequest(), os.getloadavg()
    handlers = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    with load.busy() if args.load else contextlib.nullcontext() as busy:
        print(header(device, args, started, None, busy, None, measured), flush=True)
        try:
            measure(args, device, dtypes, measured, stop.check)
        except BaseException:
            if stop.signum is None:
                raise
        finally:
            for s, handler in handlers.items():  # a second Ctrl-C or SIGTERM ends the run at once
                signal.signal(s, handler)
    stopped = stop.name
    text = header(device, args, started, os.getloadavg(), busy, stopped, measured)
    outcomes = targets.check(
        device.type,
        measured.rows,
        measured.calls,
        measured.steps,
        args.load,
        read_totals(RESULTS / name / "results.csv") if args.load else None,
    )
    write_csv(measured.rows, out / "results.csv")
    overhead.write_csv(measured.calls, out / "overhead.csv")
    figures = report.plots(measured.rows, measured.steps, out)
    (out / "results.md").write_text(
        report.markdown(text, measured.rows, measured.calls, measured.steps, outcomes, figures)
    )
    print(
        f"wrote {out / 'results.md'}, {out / 'results.csv'}, {out / 'overhead.csv'} and {len(figures)} figures"
        + (f" (partial: stopped by {stopped})" if stopped else ""),
        flush=True,
    )
    if stop.signum is not None:
        sys.exit(128 + stop.signum)


if __name__ == "__main__":
    main()
