"""The benchmark runner: every fused op against every provider, forward, backward and both, at the
paper's sizes up to large ones, plus one training step of the paper's model; writes a markdown
table, a CSV and PNG plots to benchmarks/results/<device>/.

    python -m benchmarks [--device cpu|cuda] [--dtype float32 [bfloat16]] [--rounds 7] [--sizes full|tiny]

Timings are interleaved across providers (see timing.py); --sizes tiny runs everything on small
shapes in seconds (a dry run, used by the tests and the GPU check's dry mode).
"""

import argparse
import contextlib
import csv
import platform
import re
import time
from dataclasses import dataclass
from pathlib import Path

import torch

import aevb_fast
from aevb_fast.ops._native import native

from . import cases, report, train_step
from .timing import Timing, clock, interleaved, peak_memory

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Row:
    """One provider on one case."""

    case: str
    op: str
    shape: tuple[int, ...]
    dtype: str
    provider: str
    forward: Timing
    backward: Timing
    total: Timing
    copy: Timing
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
        return self.copy_bytes / self.copy.median

    @property
    def memory_limit(self) -> float:
        """Seconds the fused kernels' own traffic takes at the copy's bandwidth."""
        return self.kernel_bytes / self.copy_bandwidth


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


def measure_case(case: cases.Case, rounds: int, warmup: int) -> list[Row]:
    device = case.device
    # On a GPU a small op takes microseconds: time several calls per sample.
    calls = 10 if device.type == "cuda" and case.shape[0] * case.shape[1] < (1 << 22) else 1

    def round_of(provider):
        def run():
            for leaf in case.leaves:
                leaf.grad = None
            forward, outputs = clock(lambda: [provider() for _ in range(calls)], device)
            backward, _ = clock(lambda: [torch.autograd.backward(out, case.upstream) for out in outputs], device)
            return {"forward": forward / calls, "backward": backward / calls, "total": (forward + backward) / calls}
        return run

    functions = {name: round_of(provider) for name, provider in case.providers.items()}
    functions["copy"] = lambda: {"copy": clock(case.copy, device, calls)[0]}
    timings = interleaved(functions, rounds, warmup)

    def peak(provider):
        for leaf in case.leaves:
            leaf.grad = None
        # aevb_fast's CPU output cache would hand out memory already resident: weigh without it.
        with no_output_cache():
            return peak_memory(lambda: torch.autograd.backward(provider(), case.upstream), device)

    return [Row(case.label, case.op, case.shape, str(case.dtype).removeprefix("torch."), name, t["forward"],
                t["backward"], t["total"], timings["copy"]["copy"], case.essential_bytes, case.kernel_bytes,
                case.copy_bytes, peak(provider))
            for name, provider in case.providers.items() for t in [timings[name]]]


@contextlib.contextmanager
def no_output_cache():
    limit = native.set_cache_limit(0) if native is not None else None
    try:
        yield
    finally:
        if native is not None:
            native.set_cache_limit(limit)


def overhead(device: torch.device, dtype: torch.dtype, rounds: int) -> dict[str, dict[str, float]]:
    """Seconds per call, forward + backward, on one-element inputs: what a call costs beyond its work."""
    out = {}
    for op in cases.OPS:
        case = cases.BUILDERS[op]((1,) * len(cases.SIZES[op][0]), dtype, device)
        rows = measure_case(case, rounds, warmup=3)
        out[op] = {row.provider: row.total.median for row in rows}
    return out


def header(device: torch.device, rounds: int) -> str:
    where = (torch.cuda.get_device_name(device) if device.type == "cuda"
             else f"{machine(device)}; {torch.get_num_threads()} threads")
    triton = "not installed"
    try:
        import triton

        triton = triton.__version__
    except ImportError:
        pass
    return (f"{where}; torch {torch.__version__}; triton {triton}; aevb_fast {aevb_fast.__version__}; "
            f"median of {rounds} interleaved rounds; {time.strftime('%Y-%m-%d')}")


def write_csv(rows: list[Row], path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["op", "shape", "dtype", "provider", "forward_ms", "backward_ms", "total_ms", "total_p25_ms",
                         "total_p75_ms", "copy_ms", "bandwidth_GBps", "copy_bandwidth_GBps", "peak_MB"])
        for r in rows:
            writer.writerow([r.op, "x".join(map(str, r.shape)), r.dtype, r.provider, *(
                f"{v * 1e3:.4f}" for v in (r.forward.median, r.backward.median, r.total.median, r.total.low,
                                           r.total.high, r.copy.median)),
                f"{r.bandwidth / 1e9:.3f}", f"{r.copy_bandwidth / 1e9:.3f}", f"{r.peak_bytes / 2**20:.1f}"])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", nargs="+", default=None, choices=["float32", "bfloat16"],
                        help="default: float32 on CPU, float32 and bfloat16 on GPU")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--sizes", default="full", choices=["full", "tiny"])
    parser.add_argument("--ops", nargs="+", default=list(cases.OPS), choices=cases.OPS)
    parser.add_argument("--out", type=Path, default=None, help="default: benchmarks/results/<device>")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    dtypes = args.dtype or (["float32", "bfloat16"] if device.type == "cuda" else ["float32"])
    out = args.out or RESULTS / machine(device)
    out.mkdir(parents=True, exist_ok=True)
    sizes = cases.SIZES if args.sizes == "full" else cases.TINY
    batches = (100, 1000) if args.sizes == "full" else (8,)

    print(header(device, args.rounds), flush=True)
    rows, steps, overheads = [], {}, {}
    for name in dtypes:
        dtype = getattr(torch, name)
        for case in cases.cases(device, dtype, sizes, args.ops):
            rows += measure_case(case, args.rounds, args.warmup)
            print(report.case_table([r for r in rows if r.case == case.label and r.dtype == name]), flush=True)
            del case
        overheads[name] = overhead(device, dtype, args.rounds)
        steps[name] = {batch: train_step.measure(device, dtype, batch, args.rounds, args.warmup) for batch in batches}
        print(report.train_table(steps[name]), flush=True)
    write_csv(rows, out / "results.csv")
    figures = report.plots(rows, steps, out)
    markdown = report.markdown(header(device, args.rounds), rows, steps, overheads, figures, device)
    (out / "results.md").write_text(markdown)
    print(f"wrote {out / 'results.md'}, {out / 'results.csv'} and {len(figures)} figures")


if __name__ == "__main__":
    main()
