"""Whole training runs of the paper's MNIST model (784-500-20, Adagrad 0.02, M = 100 and 1000), in
training samples per second, side by side in one process:

- plain PyTorch: the PyTorch VAE example's loop on the same model (sigmoid-free logits with
  F.binary_cross_entropy_with_logits, the example's KLD, torch.optim.Adagrad), the data held as
  float32 on the device and indexed by a permutation per epoch; without the paper's weight prior,
  and with it as the loss term 0.5 sum W^2 / N;
- torch.compile: the plain loop's step (model, loss and optimizer) compiled, with the prior
  (mode "reduce-overhead" on CUDA, the default mode elsewhere; --compile);
- aevb-fast train: aevb_fast.training.train.train with the prior, as the CLI runs it: the training time
  (its metrics' wall_s: the steps, not the start, the evaluation or the checkpoint) of a run of
  warmup + samples less that of a run of warmup samples.

Every run starts from the same initial model and is timed over --samples samples after --warmup
samples (compiling, for torch.compile, happens once, before); runs of one batch size are
interleaved over --rounds rounds and the median reported.

    python -m benchmarks.training [--data-path ../shared/data/mnist] [--samples 2e5] [--compile]

writes training.md and training.csv to benchmarks/results/<device>/ (or --out).
"""

import argparse
import csv
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from aevb_fast.training import data as datasets
from aevb_fast.training.models import VAE
from aevb_fast.training.train import TrainConfig, train

from .run import machine

LATENT, HIDDEN, LR = 20, 500, 0.02


class PlainLoop:
    """The plain PyTorch loop's model, optimizer and step, made once per batch size (so that a
    compiled step compiles once) and reset to the same initial state before every run."""

    def __init__(self, train_rows: torch.Tensor, prior: bool, compiled: bool, device: torch.device):
        torch.manual_seed(0)
        self.rows, self.device = train_rows, device
        self.model = VAE(784, HIDDEN, LATENT).to(device)
        self.optimizer = torch.optim.Adagrad(self.model.parameters(), lr=LR)
        self.initial = {k: v.clone() for k, v in self.model.state_dict().items()}, self.optimizer.state_dict()
        weights = [p for n, p in self.model.named_parameters() if n.endswith("weight")]
        model, optimizer, n = self.model, self.optimizer, train_rows.shape[0]

        def step(x):
            optimizer.zero_grad(set_to_none=True)
            mu, logvar = model.encoder(x)
            std = torch.exp(0.5 * logvar)
            z = mu + torch.randn_like(std) * std
            bce = F.binary_cross_entropy_with_logits(model.decoder(z), x, reduction="sum")
            kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
            loss = (bce + kld) / x.shape[0]
            if prior:
                loss = loss + 0.5 * sum(w.pow(2).sum() for w in weights) / n
            loss.backward()
            optimizer.step()
            return loss.detach()

        self.step = torch.compile(step, mode="reduce-overhead" if device.type == "cuda" else None) if compiled else step

    def __call__(self, batch: int, warmup: int, samples: int) -> float:
        """Seconds for `samples` samples after `warmup` samples, from the initial state."""
        self.model.load_state_dict(self.initial[0])
        self.optimizer.load_state_dict(self.initial[1])
        torch.manual_seed(0)
        n = self.rows.shape[0]
        seen, position, permutation = -warmup, n, None
        while seen < samples:
            if seen == 0:
                _sync(self.device)
                start = time.perf_counter()
            if position + batch > n:
                permutation, position = torch.randperm(n, device=self.device), 0
            self.step(self.rows[permutation[position : position + batch]])
            position += batch
            seen += batch
        _sync(self.device)
        return time.perf_counter() - start


def aevb_run(
    dataset: str, data_path: str | None, batch: int, warmup: int, samples: int, eval_rows: int, device: torch.device
) -> float:
    """Seconds for aevb_fast.training.train.train to train `samples` samples after `warmup`: the training
    time a run of warmup + samples records (its metrics' wall_s, read before its one evaluation, at
    the end) less that of a run of warmup samples."""

    def run(total):
        with tempfile.TemporaryDirectory() as out:
            train(
                TrainConfig(
                    dataset=dataset,
                    data_path=data_path,
                    latent_dim=LATENT,
                    batch_size=batch,
                    samples=total,
                    eval_every=total,
                    eval_rows=eval_rows,
                    device=str(device),
                    out=out,
                    figures=False,
                ),
                progress=False,
            )
            return json.loads((Path(out) / "metrics.json").read_text())[-1]["wall_s"]

    return run(warmup + samples) - run(warmup)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(
    dataset: str,
    data_path: str | None,
    batches: list[int],
    samples: int,
    warmup: int,
    rounds: int,
    eval_rows: int,
    compiled: bool,
    device: torch.device,
) -> list[dict]:
    held = datasets.load(dataset, data_path)
    train_rows = datasets.to_unit(held.train).to(device)
    rows = []
    for batch in batches:
        loops = {
            "plain PyTorch": PlainLoop(train_rows, False, False, device),
            "plain PyTorch + prior": PlainLoop(train_rows, True, False, device),
        }
        if compiled:
            loops["torch.compile (+ prior)"] = PlainLoop(train_rows, True, True, device)
        runs: dict[str, Callable[[], float]] = {
            name: lambda loop=loop: loop(batch, warmup, samples) for name, loop in loops.items()
        }
        runs["aevb-fast train (+ prior)"] = lambda: aevb_run(
            dataset, data_path, batch, warmup, samples, eval_rows, device
        )
        times: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(rounds):
            for name, run in runs.items():
                times[name].append(run())
        for name, seconds in times.items():
            rows.append(
                {
                    "batch": batch,
                    "provider": name,
                    "samples_per_s": samples / statistics.median(seconds),
                    "rounds": len(seconds),
                }
            )
    return rows


def table(rows: list[dict]) -> str:
    peer = "plain PyTorch"
    lines = ["| M | provider | samples/s | x plain PyTorch |", "|---|---|---|---|"]
    for row in rows:
        base = next(r["samples_per_s"] for r in rows if r["batch"] == row["batch"] and r["provider"] == peer)
        lines.append(
            f"| {row['batch']} | {row['provider']} | {row['samples_per_s']:,.0f} | {row['samples_per_s'] / base:.2f}x |"
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.training", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--data-path", default=None, help="full MNIST's directory (default: the embedded mnist5k)")
    parser.add_argument("--batch-size", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--samples", type=float, default=2e5)
    parser.add_argument("--warmup", type=float, default=1e4, help="samples before the clock starts")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--eval-rows", type=int, default=1000)
    parser.add_argument("--compile", action="store_true", help="add the torch.compile row (compiles first)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    dataset = "mnist5k" if args.data_path is None else "mnist"
    rows = measure(
        dataset,
        args.data_path,
        args.batch_size,
        int(args.samples),
        int(args.warmup),
        args.rounds,
        args.eval_rows,
        args.compile,
        device,
    )
    out = args.out or Path(__file__).parent / "results" / machine(device)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "training.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    text = (
        f"# Training runs: {dataset}, the paper's model 784-{HIDDEN}-{LATENT}, Adagrad {LR}\n\n"
        f"{machine(device)}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{int(args.samples):,} samples per run timed after {int(args.warmup):,}, median of {args.rounds} "
        f"interleaved rounds, "
        f"{time.strftime('%Y-%m-%d')}.\n\n{table(rows)}\n"
    )
    (out / "training.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
