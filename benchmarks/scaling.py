"""Large-scale training's two targets, measured on full MNIST:

    python -m benchmarks.scaling reader --data-path ../shared/data/mnist
    python -m benchmarks.scaling data-parallel --data-path ../shared/data/mnist --samples 3e5

reader: rows per second the streaming reader (aevb_fast.training.shards) yields in batches of 1000, on its
first pass over freshly written shards and warm, against the samples per second one training step
of the paper's MNIST model consumes at batch 1000 (target: 10x or more).

data-parallel: the paper's MNIST run (Nz = 20, M = 100, Adagrad) trained by one process and by two
(torchrun, gloo, one thread each), with the bound curves against samples evaluated side by side
(target: the same curve). Each writes a markdown table (and the curves as CSV and PNG) into --out.
"""

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from aevb_fast.training import data, shards

from . import train_step

RESULTS = Path(__file__).parent / "results" / "cpu-amd-epyc-2-threads"


def reader(data_path: str, out: Path, passes: int = 3) -> str:
    mnist = data.load("mnist", data_path)
    with tempfile.TemporaryDirectory() as directory:
        shards.from_dataset(mnist, Path(directory) / "mnist")
        split = shards.Shards(Path(directory) / "mnist").split("train")
        rates = []
        for epoch in range(passes):
            begin, rows = time.perf_counter(), 0
            for batch in split.batches(1000, seed=0, epoch=epoch):
                rows += batch.shape[0]
            rates.append(rows / (time.perf_counter() - begin))
    consumed = train_step.measure(torch.device("cpu"), torch.float32, 1000, rounds=7, warmup=2)["aevb_fast[cpu]"]
    table = [
        "| | rows or samples per second | x training |",
        "|---|---|---|",
        f"| training step, batch 1000 (consumes) | {consumed:,.0f} | 1.0 |",
        f"| reader, first pass | {rates[0]:,.0f} | {rates[0] / consumed:.1f} |",
        f"| reader, warm (best of {passes - 1}) | {max(rates[1:]):,.0f} | {max(rates[1:]) / consumed:.1f} |",
    ]
    text = "\n".join(
        ["## Streaming reader (full MNIST, 60,000 rows in shards of 10,000, batches of 1000)", "", *table, ""]
    )
    (out / "reader.md").write_text(text)
    return text


def _train(processes: int, arguments: list[str], out: Path) -> float:
    launcher = (
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
        if processes > 1
        else [sys.executable]
    )
    threads = str(max(1, torch.get_num_threads() // processes))
    begin = time.perf_counter()
    subprocess.run(
        [*launcher, "-m", "aevb_fast", "train", *arguments, "--out", str(out)],
        check=True,
        env={**os.environ, "OMP_NUM_THREADS": threads},
    )
    return time.perf_counter() - begin


def data_parallel(data_path: str, samples: int, out: Path) -> str:
    arguments = [
        "--dataset",
        "mnist",
        "--data-path",
        data_path,
        "--latent-dim",
        "20",
        "--samples",
        str(samples),
        "--eval-every",
        str(samples // 6),
        "--eval-rows",
        "10000",
        "--no-figures",
    ]
    curves, walls = {}, {}
    with tempfile.TemporaryDirectory() as directory:
        for processes in (1, 2):
            run = Path(directory) / f"run{processes}"
            walls[processes] = _train(processes, arguments, run)
            with open(run / "metrics.csv") as f:
                curves[processes] = list(csv.DictReader(f))
    with open(out / "data_parallel.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["samples", "train_bound_1", "test_bound_1", "train_bound_2", "test_bound_2"])
        for one, two in zip(curves[1], curves[2], strict=True):
            writer.writerow(
                [one["samples"], one["train_bound"], one["test_bound"], two["train_bound"], two["test_bound"]]
            )
    _plot(curves, out / "data_parallel.png")
    gap = max(
        abs(float(a[k]) - float(b[k])) for a, b in zip(curves[1], curves[2]) for k in ("train_bound", "test_bound")
    )
    rows = [
        f"| {int(a['samples']):,} | {float(a['train_bound']):.2f} | {float(b['train_bound']):.2f} | "
        f"{float(a['test_bound']):.2f} | {float(b['test_bound']):.2f} |"
        for a, b in zip(curves[1], curves[2])
    ]
    text = "\n".join(
        [
            "## Data-parallel training, 1 process against 2 (torchrun, gloo), full MNIST, Nz = 20, M = 100",
            "",
            "| samples | train bound, 1 | train bound, 2 | test bound, 1 | test bound, 2 |",
            "|---|---|---|---|---|",
            *rows,
            "",
            f"Largest gap between the curves: {gap:.1e} nats. Wall time: {walls[1]:.0f} s (1 process, "
            f"{torch.get_num_threads()} threads), {walls[2]:.0f} s (2 processes, 1 thread each), start-up included.",
            "",
        ]
    )
    (out / "data_parallel.md").write_text(text)
    return text


def _plot(curves: dict, path: Path) -> None:
    from aevb_fast.training.figures import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for processes, style in ((1, "-"), (2, "--")):
        samples = [float(r["samples"]) for r in curves[processes]]
        for key in ("train_bound", "test_bound"):
            ax.plot(
                samples,
                [float(r[key]) for r in curves[processes]],
                style,
                label=f"{key.split('_')[0]}, {processes} process{'es' if processes > 1 else ''}",
            )
    ax.set_xlabel("training samples evaluated")
    ax.set_ylabel("lower bound per datapoint")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scaling", description=__doc__.splitlines()[0])
    parser.add_argument("target", choices=["reader", "data-parallel"])
    parser.add_argument("--data-path", required=True, help="the directory of full MNIST's IDX .gz files")
    parser.add_argument("--samples", type=float, default=3e5, help="data-parallel: training samples per run")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.target == "reader":
        print(reader(args.data_path, args.out))
    else:
        print(data_parallel(args.data_path, int(args.samples), args.out))


if __name__ == "__main__":
    main()
