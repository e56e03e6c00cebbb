"""The runner's output: markdown tables (the Targets table from targets.py) and PNG plots."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt

from .overhead import PEERS, SAMPLE_SECONDS
from .timing import COPY_REPEATS


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f}" if seconds < 0.1 else f"{seconds * 1e3:.1f}"


def _fused(rows):
    return next((r for r in rows if r.provider.startswith("aevb_fast")), None)


def case_table(rows) -> str:
    """One case's rows: times, speed-up of the fused kernels, bandwidth, time over the memory limit
    and peak memory."""
    fused, first = _fused(rows), rows[0]
    lines = [
        f"\n{first.case}, {first.dtype} (memory limit {_ms(first.memory_limit)} ms: the fused kernels' "
        f"{first.kernel_bytes / 1e6:.1f} MB at a warm copy's {first.copy_bandwidth / 1e9:.1f} GB/s)\n",
        "| provider | forward (ms) | backward (ms) | forward + backward (ms) [p25, p75] | aevb_fast speed-up "
        "| GB/s | x memory limit | peak MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        speedup = f"{r.total.median / fused.total.median:.2f}x" if fused is not None and r is not fused else ""
        lines.append(
            f"| {r.provider} | {_ms(r.forward.median)} | {_ms(r.backward.median)} | {_ms(r.total.median)} "
            f"[{_ms(r.total.low)}, {_ms(r.total.high)}] | {speedup} | {r.bandwidth / 1e9:.1f} "
            f"| {r.over_limit:.2f} | {r.peak_bytes / 2**20:.1f} |"
        )
    return "\n".join(lines)


def _call_cell(seconds: float | None, fused: float | None) -> str:
    """Microseconds per call, and aevb_fast's time over these in brackets (none for aevb_fast's own)."""
    if seconds is None:
        return ""
    return f"{seconds * 1e6:.1f}" + ("" if fused is None else f" ({fused / seconds:.2f})")


def calls_table(calls) -> str:
    """Microseconds per call of each function (one dtype), with aevb_fast's time over each other
    provider's in brackets."""
    if not calls:
        return ""
    fused_names = list(dict.fromkeys(c.provider for c in calls if c.provider.startswith("aevb_fast")))
    providers = fused_names + [p for p in PEERS if any(c.provider == p for c in calls)]
    lines = [
        f"\n| function ({calls[0].dtype}) | shape | " + " | ".join(providers) + " |",
        "|---" * (len(providers) + 2) + "|",
    ]
    for key in dict.fromkeys((c.function, c.shape) for c in calls):
        mine = [c for c in calls if (c.function, c.shape) == key]
        times = {c.provider: c.time.median for c in mine}
        fused = times.get(fused_names[0]) if fused_names else None
        cells = [_call_cell(times.get(p), None if p in fused_names else fused) for p in providers]
        lines.append(f"| {key[0]} | {mine[0].dims} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def train_table(steps: dict[int, dict[str, float]]) -> str:
    lines = ["\n| batch | loss | samples/s | vs reference |", "|---|---|---|---|"]
    for batch, rates in steps.items():
        for name, rate in rates.items():
            lines.append(f"| {batch} | {name} | {rate:,.0f} | {rate / rates['reference']:.2f}x |")
    return "\n".join(lines)


def targets_table(outcomes) -> str:
    met = {True: "yes", False: "no", None: "-"}
    return "\n".join(
        ["| target | measured | met |", "|---|---|---|"]
        + [f"| {o.target} | {o.measured} | {met[o.met]} |" for o in outcomes]
    )


def markdown(header: str, rows, calls, steps, outcomes, figures) -> str:
    parts = [
        f"# Benchmarks\n\n{header}\n",
        'Forward + backward of each op with a fixed upstream gradient. "x memory limit" is that time '
        "over the memory limit: the time the fused kernels' own reads and writes take at the bandwidth of a "
        "warm copy (the case's largest input copied into a buffer written beforehand, so without page "
        f"faults; best of {COPY_REPEATS} copies a round and of the rounds, interleaved with the providers). "
        "GB/s is the effective bandwidth: each input read and each output written once, over the time.\n",
        "## Targets\n",
        targets_table(outcomes),
        "\n## Per-call overhead\n",
        "Forward + backward of every public function (gradients set to None, the call, its backward), "
        "microseconds per call, on one-element inputs and for vae_loss also at the PyTorch VAE example's "
        f"minibatch; each sample a loop of calls lasting at least {SAMPLE_SECONDS * 1e3:.0f} ms, the median "
        "of the rounds. In brackets: aevb_fast's time over that provider's (below 1, the fused call costs "
        "less).\n",
    ]
    for dtype in dict.fromkeys(c.dtype for c in calls):
        parts.append(calls_table([c for c in calls if c.dtype == dtype]) + "\n")
    parts.append("## Training step of the paper's MNIST model (784-500-20, Adagrad)\n")
    for dtype, batches in steps.items():
        parts.append(f"{dtype}:" + train_table(batches) + "\n")
    for op in dict.fromkeys(r.op for r in rows):
        parts.append(f"## {op}")
        for label in dict.fromkeys(r.case + "|" + r.dtype for r in rows if r.op == op):
            case, dtype = label.split("|")
            parts.append(case_table([r for r in rows if r.case == case and r.dtype == dtype]) + "\n")
    parts.append("## Figures\n")
    parts += [f"![{path.stem}]({path.name})" for path in figures]
    return "\n".join(parts) + "\n"


def _color(name: str) -> str:
    """One color per provider across every figure (matplotlib's default cycle, by first use)."""
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return cycle[_COLORS.setdefault(name, len(_COLORS)) % len(cycle)]


_COLORS: dict[str, int] = {}


def _grouped_bars(ax, groups: list[str], series: dict[str, list[float]], errors=None, log=False):
    width = 0.8 / max(len(series), 1)
    for i, (name, values) in enumerate(series.items()):
        positions = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
        ax.bar(
            positions,
            values,
            width,
            label=name,
            color=_color(name),
            yerr=None if errors is None else errors[name],
            capsize=2,
        )
    ax.set_xticks(range(len(groups)), groups, fontsize=8)
    if log:
        ax.set_yscale("log")


def plots(rows, steps, out: Path) -> list[Path]:
    figures = []
    for dtype in dict.fromkeys(r.dtype for r in rows):
        mine = [r for r in rows if r.dtype == dtype]
        ops = list(dict.fromkeys(r.op for r in mine))
        panels = {
            "time": ("forward + backward (ms), bars at median, whiskers p25-p75", True, lambda r: r.total.median * 1e3),
            "speedup": ("aevb_fast's speed-up over each provider (x)", False, None),
            "limit": ("forward + backward over the memory limit (x)", True, lambda r: r.over_limit),
            "memory": ("peak memory (MB)", True, lambda r: max(r.peak_bytes / 2**20, 1e-3)),
        }
        for kind, (title, log, value) in panels.items():
            fig, axes = plt.subplots(1, len(ops), figsize=(5 * len(ops), 4), squeeze=False)
            for ax, op in zip(axes[0], ops):
                cases = list(dict.fromkeys(r.case for r in mine if r.op == op))
                sizes = [c.split(" ", 1)[1] for c in cases]
                providers = list(dict.fromkeys(r.provider for r in mine if r.op == op))
                table = {(r.case, r.provider): r for r in mine if r.op == op}
                if kind == "speedup":
                    fused = [p for p in providers if p.startswith("aevb_fast")][:1]
                    series = {
                        p: [table[c, p].total.median / table[c, fused[0]].total.median for c in cases]
                        for p in providers
                        if fused and p not in fused
                    }
                    ax.axhline(1.0, color="grey", linewidth=0.8)
                    errors = None
                else:
                    series = {p: [value(table[c, p]) for c in cases] for p in providers}
                    errors = None
                    if kind == "time":
                        errors = {
                            p: [
                                [(table[c, p].total.median - table[c, p].total.low) * 1e3 for c in cases],
                                [(table[c, p].total.high - table[c, p].total.median) * 1e3 for c in cases],
                            ]
                            for p in providers
                        }
                _grouped_bars(ax, sizes, series, errors, log)
                ax.set_title(op, fontsize=10)
            axes[0][0].set_ylabel(title, fontsize=8)
            handles = {label: handle for ax in axes[0] for handle, label in zip(*ax.get_legend_handles_labels())}
            axes[0][-1].legend(handles.values(), handles.keys(), fontsize=7)
            fig.suptitle(f"{title}, {dtype}", fontsize=10)
            fig.tight_layout()
            path = out / f"{kind}_{dtype}.png"
            fig.savefig(path, dpi=90)
            plt.close(fig)
            figures.append(path)
    if not steps:
        return figures
    fig, axes = plt.subplots(1, len(steps), figsize=(5 * len(steps), 4), squeeze=False)
    for ax, (dtype, batches) in zip(axes[0], steps.items()):
        names = list(next(iter(batches.values())))
        _grouped_bars(ax, [f"batch {b}" for b in batches], {n: [rates[n] for rates in batches.values()] for n in names})
        ax.set_title(f"training step, {dtype}", fontsize=10)
        ax.set_ylabel("samples / s", fontsize=8)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = out / "train_step.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    figures.append(path)
    return figures
