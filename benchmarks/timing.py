"""How things are timed and weighed: interleaved rounds (A B C A B C ...) after warm-up, so that
machine noise lands on every provider alike and cancels in ratios; calls that take microseconds in
loops of many per sample, as timeit does; the memory yardstick, a warm copy; peak memory from the
device's allocator (CUDA) or the process's peak resident set (CPU, reset through
/proc/self/clear_refs)."""

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass
class Timing:
    """Seconds per call over the measured rounds."""

    samples: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def best(self) -> float:
        return min(self.samples)

    @property
    def low(self) -> float:  # the spread shown: 25th and 75th percentiles
        return _quantile(self.samples, 0.25)

    @property
    def high(self) -> float:
        return _quantile(self.samples, 0.75)


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    below = int(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def clock(fn: Callable, device: torch.device, calls: int = 1):
    """(seconds per call, the last call's result) of `calls` calls of fn, the device drained first."""
    synchronize(device)
    start = time.perf_counter()
    for _ in range(calls):
        result = fn()
    synchronize(device)
    return (time.perf_counter() - start) / calls, result


def calls_per_sample(fn: Callable, device: torch.device, seconds: float) -> int:
    """How many calls of fn in a row last `seconds` or more (doubling, as timeit's autorange), so that
    a sample of a microsecond call is not the timer's resolution and the loop's own cost."""
    calls = 1
    while clock(fn, device, calls)[0] * calls < seconds:
        calls *= 2
    return calls


COPY_REPEATS = 3


def warm_copy(
    source: torch.Tensor, device: torch.device, calls: int = 1, repeats: int = COPY_REPEATS
) -> Callable[[], dict[str, float]]:
    """The memory yardstick as a function for interleaved(): seconds of a copy of `source` into a
    buffer allocated and written beforehand, the best of `repeats`. Into fresh memory a copy would
    time the page faults too, on a CPU as long as the copy itself; the best is the bandwidth the
    memory gives, which noise only lowers."""
    source = source.detach()
    destination = torch.empty_like(source).copy_(source)
    return lambda: {"copy": min(clock(lambda: destination.copy_(source), device, calls)[0] for _ in range(repeats))}


def interleaved(
    functions: dict[str, Callable[[], dict[str, float]]], rounds: int, warmup: int
) -> dict[str, dict[str, Timing]]:
    """Runs each function once per round, in turn, for warmup + rounds rounds; each returns the
    seconds of its phases ({"forward": ..., "backward": ...}). Keeps the measured rounds:
    {name: {phase: Timing}}."""
    samples: dict[str, dict[str, list[float]]] = {name: {} for name in functions}
    for round_ in range(warmup + rounds):
        for name, fn in functions.items():
            phases = fn()
            if round_ >= warmup:
                for phase, seconds in phases.items():
                    samples[name].setdefault(phase, []).append(seconds)
    return {name: {phase: Timing(s) for phase, s in phases.items()} for name, phases in samples.items()}


def _resident_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def peak_memory(fn: Callable[[], None], device: torch.device) -> int:
    """Bytes fn allocates at its peak beyond what was in use before it ran."""
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")  # resets the peak resident set (VmHWM) to the current one
    before = _resident_kib("VmRSS")
    fn()
    return (_resident_kib("VmHWM") - before) * 1024
