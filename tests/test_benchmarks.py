"""The benchmarks keep working: the prepared GPU check (benchmarks/gpu_check.sh) in its CPU dry run,
which runs the benchmark runner at tiny sizes, and its time budget; the runner's machinery (size
sets, the warm-copy memory limit, the per-call overhead, the targets, the busy process of --load, the
partial results a SIGTERM leaves); the pytest-benchmark micro-benchmarks at tiny sizes with timing
off; the streaming reader's measurement (benchmarks/scaling.py) on full MNIST; and the whole
training runs' comparison (benchmarks/training.py), a few steps each.

Nothing here asserts on speed: the machine may be loaded, and timings only need to exist."""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import aevb_fast
from benchmarks import cases, load, overhead, report, run, targets
from benchmarks.timing import Timing

ROOT = Path(__file__).resolve().parents[1]
MNIST = ROOT.parent / "shared" / "data" / "mnist"
CPU = torch.device("cpu")


def _gpu_check(out: Path, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry-run", str(out)],
        env={**os.environ, "PYTHON": sys.executable, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_gpu_check_dry_run(tmp_path):
    run_ = _gpu_check(tmp_path)
    assert run_.returncode == 0, run_.stdout + run_.stderr
    report_ = (tmp_path / "gpu_check.md").read_text()
    assert "dry run on the CPU" in report_ and "budget 780 s" in report_
    titles = ["## Environment", "## Benchmarks", "## Tests (a sample)"]
    assert [report_.index(t) for t in titles] == sorted(report_.index(t) for t in titles)
    assert report_.count("exit status 0") == 3 and "skipped" not in report_
    for name in (
        "results.md",
        "results.csv",
        "overhead.csv",
        "time_float32.png",
        "limit_float32.png",
        "train_step.png",
    ):
        assert (tmp_path / name).is_file()
    results = (tmp_path / "results.md").read_text()
    for case in (
        "bernoulli [64, 300]",
        "gaussian [64, 300]",
        "reparameterize [128, 20]",
        "vae_loss [64, 300] + [64, 20]",
        "## Targets",
        "## Per-call overhead",
        "x memory limit",
    ):
        assert case in results


def test_gpu_check_skips_what_the_budget_does_not_cover(tmp_path):
    run_ = _gpu_check(tmp_path, GPU_CHECK_BUDGET_S="2")
    assert run_.returncode == 0, run_.stdout + run_.stderr
    report_ = (tmp_path / "gpu_check.md").read_text()
    assert "budget 2 s" in report_ and "Skipped for the 2 s budget" in report_
    for title in ("Environment", "Benchmarks", "Tests (a sample)"):
        assert f"## {title}\n\nskipped:" in report_ and f"- {title}\n" in report_
    assert not (tmp_path / "results.md").exists()


def test_size_sets():
    assert cases.shapes("bernoulli", ["paper", "large"]) == [("paper", (100, 784)), ("large", (4096, 12288))]
    assert [size for size, _ in cases.shapes("gaussian", ["full"])] == ["paper", "medium", "large"]
    assert cases.shapes("bernoulli_head", ["medium"]) == []
    assert cases.shapes("vae_loss", ["tiny"]) == [("tiny", (64, 300, 20))]
    assert [size for size, _ in cases.shapes("reparameterize", ["large", "tiny", "paper"])] == [
        "tiny",
        "paper",
        "large",
    ]


def _running(pid: int) -> bool:
    """Whether pid is a live process (a zombie, exited but not yet reaped, is not)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def _wait_until_gone(pid: int, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not _running(pid)


def test_busy_load_runs_for_the_context_only():
    with load.busy() as busy:
        assert _running(busy.pid)
        assert len(busy.before) == 3 and busy.after is None
    assert not _running(busy.pid) and len(busy.after) == 3


def test_busy_load_ends_with_a_killed_runner():
    # A runner killed with SIGKILL runs no cleanup: the busy process notices it is gone.
    runner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from benchmarks import load\nwith load.busy() as b:\n    print(b.pid, flush=True)\n    input()",
        ],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    pid = int(runner.stdout.readline())
    assert _running(pid)
    runner.kill()
    runner.wait()
    assert _wait_until_gone(pid)


def _row(op, shape, provider, seconds, dtype="float32", kernel_bytes=0, copy_seconds=1.0, peak=0, size="paper"):
    t = Timing([seconds])
    return run.Row(
        f"{op} {cases.dims(op, shape)}",
        op,
        size,
        shape,
        dtype,
        provider,
        t,
        t,
        t,
        Timing([copy_seconds]),
        0,
        kernel_bytes,
        1_000_000,
        peak,
    )


def _call(function, shape, provider, seconds, op=None):
    return overhead.CallRow(function, op or function, shape, "float32", provider, Timing([seconds]), 1)


def test_targets_met_and_not_met_from_given_rows():
    large = (4096, 12288)
    # The copy moves 1e6 bytes in 1 ms: 1e9 B/s; 8e7 bytes of kernel traffic take 80 ms at it.
    rows = [
        _row("bernoulli", large, "aevb_fast[cpu]", 0.1, kernel_bytes=80_000_000, copy_seconds=1e-3),
        _row("bernoulli", large, "torch.compile", 0.4),
        _row("bernoulli", large, "F.bce_with_logits", 0.5),
        _row("reparameterize", (100, 20), "aevb_fast[cpu]", 1.0),
        _row("reparameterize", (100, 20), "eager", 1.2),
    ]
    calls = [
        _call("bernoulli_log_prob", (1, 1), "aevb_fast[cpu]", 40e-6, "bernoulli"),
        _call("bernoulli_log_prob", (1, 1), "eager", 80e-6, "bernoulli"),
        _call("vae_loss", (1, 1, 1), "aevb_fast[cpu]", 60e-6),
        _call("vae_loss", (1, 1, 1), "eager", 100e-6),
        _call("vae_loss", (1, 1, 1), "pytorch example", 100e-6),
        _call("vae_loss", cases.EXAMPLE_SHAPE, "aevb_fast[cpu]", 1.0),
        _call("vae_loss", cases.EXAMPLE_SHAPE, "eager", 1.0),
    ]
    steps = {"float32": {100: {"aevb_fast[cpu]": 1200.0, "reference": 1000.0}}}
    outcomes = {o.target: o for o in targets.check("cpu", rows, calls, steps)}

    def outcome(start):
        (found,) = [o for target, o in outcomes.items() if target.startswith(start)]
        return found.measured, found.met

    assert outcome("bernoulli [4096, 12288] float32: >= 3.0x faster than torch.compile") == ("4.00x", True)
    assert outcome("bernoulli [4096, 12288] float32: >= 8.0x faster than F.bce_with_logits") == ("5.00x", False)
    assert outcome("bernoulli [4096, 12288] float32: <= 1.5x the memory limit") == ("1.25x", True)
    assert outcome("reparameterize [100, 20] float32: >= 1.3x faster than eager") == ("1.20x", False)
    assert outcome("bernoulli [100, 784] float32: >= 1.5x") == ("not measured", None)
    assert outcome("bernoulli_log_prob, one element, float32: time per call <= 0.7x") == ("0.50x", True)
    assert outcome("vae_loss, one element, float32: time per call <= 0.7x eager's") == ("0.60x", True)
    assert outcome("vae_loss, one element, float32: time per call <= 0.5x the PyTorch") == ("0.60x", False)
    assert outcome("gaussian_kl, one element") == ("not measured", None)
    assert outcome("training step, batch 100, float32") == ("1.20x", True)
    assert not any("under load" in target for target in outcomes)
    table = report.targets_table(outcomes.values())
    assert "| 4.00x | yes |" in table and "| 5.00x | no |" in table and "| not measured | - |" in table

    paper = [_row("bernoulli", (100, 784), "aevb_fast[cpu]", 2e-3), _row("bernoulli", (100, 784), "eager", 1e-3)]
    loaded = {o.target: o for o in targets.check("cpu", paper, [], {}, loaded=True, unloaded=None)}
    assert loaded["bernoulli [100, 784] float32 under load: >= 1.0x faster than eager"].met is False
    assert loaded["bernoulli [100, 784] float32 under load: <= 2.0x its unloaded time"].measured == "no unloaded run"
    unloaded = {("bernoulli", (100, 784), "float32", "aevb_fast[cpu]"): 0.5e-3}
    loaded = {o.target: o for o in targets.check("cpu", paper, [], {}, loaded=True, unloaded=unloaded)}
    slowdown = loaded["bernoulli [100, 784] float32 under load: <= 2.0x its unloaded time"]
    assert (slowdown.measured, slowdown.met) == ("4.00x", False)
    assert loaded["gaussian [100, 560] float32 under load: <= 2.0x its unloaded time"].measured == "not measured"


def test_memory_limit_from_a_warm_copy(tmp_path):
    case = cases.reparameterize((64, 20), torch.float32, CPU)
    case.providers = {name: p for name, p in case.providers.items() if name.startswith("aevb_fast") or name == "eager"}
    rows = run.measure_case(case, "tiny", rounds=2, warmup=0)
    for row in rows:
        assert row.copy.best > 0 and row.copy_bytes == 2 * 64 * 20 * 4
        assert row.memory_limit == pytest.approx(row.kernel_bytes / (row.copy_bytes / row.copy.best))
        assert row.over_limit == pytest.approx(row.total.median / row.memory_limit)
    assert "| x memory limit |" in report.case_table(rows)
    run.write_csv(rows, tmp_path / "results.csv")
    with open(tmp_path / "results.csv", newline="") as f:
        written = list(csv.DictReader(f))
    assert {"warm_copy_ms", "memory_limit_ms", "total_over_limit", "size"} <= set(written[0])
    assert "copy_ms" not in written[0]
    assert float(written[0]["total_over_limit"]) > 0
    assert run.read_totals(tmp_path / "results.csv")[("reparameterize", (64, 20), "float32", "eager")] > 0
    assert run.read_totals(tmp_path / "missing.csv") is None


def test_per_call_overhead(tmp_path):
    rows = overhead._measure("bernoulli_log_prob", cases.bernoulli((1, 1), torch.float32, CPU), rounds=2, seconds=1e-3)
    rows += overhead._measure(
        "vae_loss", cases.vae_loss(cases.EXAMPLE_SHAPE, torch.float32, CPU), rounds=1, seconds=1e-3
    )
    providers = {(r.function, r.provider) for r in rows}
    assert {
        ("bernoulli_log_prob", "eager"),
        ("bernoulli_log_prob", "F.bce_with_logits"),
        ("vae_loss", "pytorch example"),
        ("vae_loss", "eager"),
    } <= providers
    assert not any(p in ("torch.compile", "torch.distributions") for _, p in providers)
    assert all(r.calls >= 1 and r.time.median > 0 and len(r.time.samples) in (1, 2) for r in rows)
    table = report.calls_table(rows)
    assert "| vae_loss | [128, 784] + [128, 20] |" in table and "| bernoulli_log_prob | [1, 1] |" in table
    overhead.write_csv(rows, tmp_path / "overhead.csv")
    with open(tmp_path / "overhead.csv", newline="") as f:
        written = list(csv.DictReader(f))
    assert len(written) == len(rows) and {"us_per_call", "calls_per_sample", "over_eager"} <= set(written[0])
    # Every public function of the objective (not the helpers, iwae_bound's plain torch over the
    # ops' outputs included, nor the modules optim and reference).
    helpers = {"backend_for", "chunk_rows_for", "empty_cache", "info", "iwae_bound", "optim", "reference"}
    assert set(cases.FUNCTIONS) == {n for n in aevb_fast.__all__ if n.islower() and n[0] != "_"} - helpers


def test_sigterm_writes_partial_results_and_ends_the_load(tmp_path):
    runner = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--sizes",
            "tiny",
            "--rounds",
            "1",
            "--warmup",
            "0",
            "--call-rounds",
            "1",
            "--ops",
            "reparameterize",
            "gaussian",
            "--load",
            "--out",
            str(tmp_path),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines, pid, first_case = [], None, False
    for line in runner.stdout:  # up to the first case's table, printed once the case is measured
        lines.append(line)
        if "busy process" in line:
            pid = int(line.split("pid ")[1].split(")")[0])
        first_case = first_case or line.startswith("reparameterize [128, 20]")
        if first_case and line.startswith("|---"):
            break
    else:
        pytest.fail("the runner ended before its first case:\n" + "".join(lines))
    assert pid is not None and _running(pid)
    runner.send_signal(signal.SIGTERM)
    output = runner.communicate(timeout=120)[0]
    assert runner.returncode == 128 + signal.SIGTERM, output
    assert _wait_until_gone(pid)
    results = (tmp_path / "results.md").read_text()
    assert "**Partial results**: stopped by SIGTERM" in results and "Under load" in results
    assert "reparameterize [128, 20]" in results
    with open(tmp_path / "results.csv", newline="") as f:
        assert "reparameterize" in {row["op"] for row in csv.DictReader(f)}


def test_micro_benchmarks_run():
    run_ = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "benchmarks",
            "--bench-sizes",
            "tiny",
            "--benchmark-disable",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run_.returncode == 0, run_.stdout[-3000:] + run_.stderr[-3000:]
    assert " passed" in run_.stdout


@pytest.mark.skipif(not MNIST.is_dir(), reason="../shared/data/mnist is not beside this checkout")
def test_reader_benchmark_runs(tmp_path):
    from benchmarks import scaling

    text = scaling.reader(str(MNIST), tmp_path, passes=2)
    assert "| reader, first pass |" in text and (tmp_path / "reader.md").read_text() == text


def test_training_benchmark_runs(tmp_path):
    from benchmarks import training

    training.main(
        [
            "--samples",
            "3000",
            "--warmup",
            "200",
            "--rounds",
            "1",
            "--batch-size",
            "100",
            "--eval-rows",
            "100",
            "--out",
            str(tmp_path),
        ]
    )
    with open(tmp_path / "training.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["provider"] for r in rows] == ["plain PyTorch", "plain PyTorch + prior", "aevb-fast train (+ prior)"]
    assert all(float(r["samples_per_s"]) > 0 and r["batch"] == "100" for r in rows)
    assert "| 100 | aevb-fast train (+ prior) |" in (tmp_path / "training.md").read_text()
