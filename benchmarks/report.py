"""The runner's output: markdown tables (with the targets of the benchmark issues checked against
the measurements) and PNG plots."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

# (device type, op, size, what, threshold): the targets the project set itself (issues 3, 4 and 7).
# "compile"/"eager": aevb_fast's forward + backward speed-up over that provider; "copy": its time
# over a same-size copy's; "limit": its time over its own traffic at copy bandwidth; "memory": its
# peak memory over eager's.
TARGETS = [
    ("cpu", "bernoulli", (4096, 12288), "compile", 3.0),
    ("cpu", "bernoulli", (4096, 12288), "eager", 8.0),
    ("cpu", "bernoulli", (4096, 12288), "copy", 2.5),
    ("cpu", "reparameterize", (65536, 256), "compile", 2.0),
    ("cpu", "reparameterize", (65536, 256), "eager", 5.0),
    ("cpu", "bernoulli", (100, 784), "eager", 1.0),
    ("cpu", "gaussian", (100, 560), "eager", 1.0),
    ("cpu", "reparameterize", (100, 20), "eager", 1.0),
    ("cuda", "bernoulli", (4096, 12288), "limit", 1.25),
    ("cuda", "bernoulli", (4096, 12288), "compile", 1.3),
    ("cuda", "bernoulli", (4096, 12288), "eager", 3.0),
    ("cuda", "reparameterize", (65536, 256), "compile", 1.5),
    ("cuda", "reparameterize", (65536, 256), "eager", 4.0),
    ("cpu", "bernoulli_head", (8192, 500, 12288), "memory", 0.40),
    ("cpu", "bernoulli_head", (8192, 500, 12288), "eager", 1.0),
    ("cuda", "bernoulli_head", (8192, 500, 12288), "memory", 0.40),
    ("cuda", "bernoulli_head", (8192, 500, 12288), "compile", 1.2),
]
TRAIN_STEP_TARGET = 1.15


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f}" if seconds < 0.1 else f"{seconds * 1e3:.1f}"


def _fused(rows):
    return next((r for r in rows if r.provider.startswith("aevb_fast")), None)


def case_table(rows) -> str:
    """One case's rows: times, speed-up of the fused kernels, bandwidth and peak memory."""
    fused = _fused(rows)
    lines = [f"\n{rows[0].case}, {rows[0].dtype} (copy {_ms(rows[0].copy.median)} ms, "
             f"{rows[0].copy_bandwidth / 1e9:.1f} GB/s)\n",
             "| provider | forward (ms) | backward (ms) | forward + backward (ms) [p25, p75] | aevb_fast speed-up "
             "| GB/s | / copy GB/s | peak MB |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        speedup = f"{r.total.median / fused.total.median:.2f}x" if fused is not None and r is not fused else ""
        lines.append(f"| {r.provider} | {_ms(r.forward.median)} | {_ms(r.backward.median)} | {_ms(r.total.median)} "
                     f"[{_ms(r.total.low)}, {_ms(r.total.high)}] | {speedup} | {r.bandwidth / 1e9:.1f} "
                     f"| {r.bandwidth / r.copy_bandwidth:.2f} | {r.peak_bytes / 2**20:.1f} |")
    return "\n".join(lines)


def train_table(steps: dict[int, dict[str, float]]) -> str:
    lines = ["\n| batch | loss | samples/s | vs reference |", "|---|---|---|---|"]
    for batch, rates in steps.items():
        for name, rate in rates.items():
            lines.append(f"| {batch} | {name} | {rate:,.0f} | {rate / rates['reference']:.2f}x |")
    return "\n".join(lines)


def targets_table(rows, steps, device) -> str:
    lines = ["| target | measured | met |", "|---|---|---|"]
    for device_type, op, shape, what, threshold in TARGETS:
        if device_type != device.type:
            continue
        for dtype in sorted({r.dtype for r in rows}):
            case = [r for r in rows if r.op == op and r.shape == shape and r.dtype == dtype]
            fused = _fused(case)
            if fused is None:
                continue
            name = f"{op} {list(shape)} {dtype}"
            if what == "memory":
                eager = next(r for r in case if r.provider == "eager")
                value = fused.peak_bytes / eager.peak_bytes
                goal, met, shown = f"peak memory <= {threshold:.0%} of eager's", value <= threshold, f"{value:.1%}"
            elif what in ("compile", "eager"):
                other = next(r for r in case if r.provider == ("torch.compile" if what == "compile" else "eager"))
                value = other.total.median / fused.total.median
                goal, met, shown = f">= {threshold}x faster than {what}", value >= threshold, f"{value:.2f}x"
            else:
                base = fused.copy.median if what == "copy" else fused.memory_limit
                value = fused.total.median / base
                goal = f"<= {threshold}x the {'same-size copy' if what == 'copy' else 'traffic at copy bandwidth'}"
                met, shown = value <= threshold, f"{value:.2f}x"
            lines.append(f"| {name}: {goal} | {shown} | {'yes' if met else 'no'} |")
    for dtype, batches in steps.items():
        for batch, rates in batches.items():
            fused = next((v for k, v in rates.items() if k.startswith("aevb_fast")), None)
            if fused is not None:
                ratio = fused / rates["reference"]
                lines.append(f"| training step, batch {batch}, {dtype}: >= {TRAIN_STEP_TARGET}x the reference's "
                             f"samples/s | {ratio:.2f}x | {'yes' if ratio >= TRAIN_STEP_TARGET else 'no'} |")
    return "\n".join(lines)


def markdown(header: str, rows, steps, overheads, figures, device) -> str:
    parts = [f"# Benchmarks\n\n{header}\n",
             "Forward + backward of each op with a fixed upstream gradient; \"/ copy GB/s\" is the effective "
             "bandwidth (each input read and each output written once) over a same-size copy's in the same run.\n",
             "## Targets\n", targets_table(rows, steps, device), "\n## Per-call overhead\n",
             "Forward + backward on one-element inputs, microseconds:\n"]
    for dtype, ops in overheads.items():
        providers = list(dict.fromkeys(p for times in ops.values() for p in times))
        parts.append(f"| op ({dtype}) | " + " | ".join(providers) + " |")
        parts.append("|---" * (len(providers) + 1) + "|")
        for op, times in ops.items():
            cells = (f"{times[p] * 1e6:.0f}" if p in times else "" for p in providers)
            parts.append(f"| {op} | " + " | ".join(cells) + " |")
        parts.append("")
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
        ax.bar(positions, values, width, label=name, color=_color(name),
               yerr=None if errors is None else errors[name], capsize=2)
    ax.set_xticks(range(len(groups)), groups, fontsize=8)
    if log:
        ax.set_yscale("log")


def plots(rows, steps, out: Path) -> list[Path]:
    figures = []
    for dtype in dict.fromkeys(r.dtype for r in rows):
        mine = [r for r in rows if r.dtype == dtype]
        ops = list(dict.fromkeys(r.op for r in mine))
        panels = {
            "time": ("forward + backward (ms), bars at median, whiskers p25-p75", True,
                     lambda r: r.total.median * 1e3),
            "speedup": ("aevb_fast's speed-up over each provider (x)", False, None),
            "bandwidth": ("effective bandwidth / copy bandwidth", False, lambda r: r.bandwidth / r.copy_bandwidth),
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
                    series = {p: [table[c, p].total.median / table[c, fused[0]].total.median for c in cases]
                              for p in providers if fused and p not in fused}
                    ax.axhline(1.0, color="grey", linewidth=0.8)
                    errors = None
                else:
                    series = {p: [value(table[c, p]) for c in cases] for p in providers}
                    errors = None
                    if kind == "time":
                        errors = {p: [[(table[c, p].total.median - table[c, p].total.low) * 1e3 for c in cases],
                                      [(table[c, p].total.high - table[c, p].total.median) * 1e3 for c in cases]]
                                  for p in providers}
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
