"""Training the paper's VAE on the SGVB bound (PAPER.md): minibatches of M = 100, L = 1 sample,
estimator B, Adagrad, weights drawn from N(0, 0.01^2) and an N(0, I) prior on the weight matrices,
run for a number of training samples evaluated; the train and test bounds are logged against that
count as in the paper's Figure 2.

    config = TrainConfig(dataset="mnist5k", latent_dim=20, samples=1_000_000, out="runs/mnist5k-z20")
    train(config)       # writes metrics.csv/.json, checkpoint.pt and the figures into config.out

A run killed at any point continues with train(config, resume=True) from its last checkpoint and
reaches the parameters the uninterrupted run would have reached. The same function runs data-
parallel under torchrun (aevb_fast.distributed) and streams data sets larger than memory from
shards (dataset="shards", data_path the directory aevb-fast convert wrote; aevb_fast.minibatches).
"""

import contextlib
import csv
import dataclasses
import io
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from . import data as datasets
from . import distributed
from . import figures as plots
from .functional import ESTIMATORS, check_choice
from .minibatches import SHARDS, check_batch, open_source, shares
from .models import VAE

OPTIMIZERS = ("adagrad", "adam")
PRECISIONS = ("float32", "bfloat16")
# Hidden units by decoder and Adagrad step size (PAPER.md: 500 for MNIST's Bernoulli decoder, 200 for
# Frey Face's Gaussian one, shards taking the width of the data set their decoder matches; step sizes
# chosen from {0.01, 0.02, 0.1}).
HIDDEN = {"bernoulli": 500, "gaussian": 200}
STEP_SIZE = {"adagrad": 0.02, "adam": 1e-3}
METRICS = ("samples", "train_bound", "test_bound", "wall_s", "samples_per_s")


@dataclass
class TrainConfig:
    dataset: str = "mnist5k"  # or "shards", with data_path the shards' directory
    data_path: str | None = None
    latent_dim: int = 20
    hidden_dim: int | None = None  # None: the paper's width for the data set
    optimizer: str = "adagrad"
    lr: float | None = None  # None: the optimizer's default step size above
    batch_size: int = 100
    n_samples: int = 1
    estimator: str = "analytic"
    samples: int = 1_000_000  # training samples evaluated, the x-axis of Figure 2
    eval_every: int = 100_000
    eval_rows: int | None = None  # rows of each split the bounds are evaluated on; None: all
    seed: int = 0
    device: str = "cpu"  # "cuda": under torchrun, each rank on GPU LOCAL_RANK
    backend: str | None = None
    fused_head: bool | None = None  # None: where it saves memory (VAE.forward)
    precision: str = "float32"  # or "bfloat16": autocast
    compile: bool = False  # torch.compile the training step's model
    out: str = "runs/default"
    figures: bool = True  # bound.png, samples.png and (Nz = 2) manifold.png at the end

    def __post_init__(self):
        # Paths are kept as strings: the checkpoint stores the settings, and loads with weights_only.
        self.data_path = os.fspath(self.data_path) if isinstance(self.data_path, os.PathLike) else self.data_path
        self.out = os.fspath(self.out) if isinstance(self.out, os.PathLike) else self.out

    def check(self) -> None:
        check_choice("dataset", self.dataset, (*datasets.DATASETS, SHARDS))
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("estimator", self.estimator, ESTIMATORS)
        check_choice("precision", self.precision, PRECISIONS)
        for name in ("latent_dim", "batch_size", "n_samples", "samples", "eval_every", "eval_rows"):
            value = getattr(self, name)
            if (value is not None or name != "eval_rows") and (
                    isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.lr is not None and not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if self.fused_head not in (None, True, False):
            raise ValueError(f"fused_head must be True, False or None (where it saves memory), got {self.fused_head!r}")
        if self.compile not in (True, False):
            raise ValueError(f"compile must be True or False, got {self.compile!r}")


def _log_prior_share(model: VAE, n_train: int) -> torch.Tensor:
    """The N(0, I) prior on the weight matrices, per datapoint: 1/2 sum W^2 / N. (The authors' code
    adds M/N of the prior's gradient to each minibatch's summed bound; per datapoint that is 1/N.)"""
    return 0.5 * sum(p.pow(2).sum() for n, p in model.named_parameters() if n.endswith("weight")) / n_train


# data and rng hold one entry per rank: its place in its minibatch stream and its generator state.
CHECKPOINT_KEYS = {"model", "optimizer", "data", "rng", "samples", "wall_s", "metrics", "config"}


def _save_atomically(state: dict, path: Path) -> None:
    """Writes path through a temporary file, flushed to disk, that replaces it in one rename, so a
    reader sees the old checkpoint or the new one, never half of one; the old one, if it reads
    cleanly, stays beside it as checkpoint.prev.pt, in case the newest is lost or damaged later (a
    damaged old one never displaces a good previous one)."""
    temporary = path.with_suffix(".tmp")
    with open(temporary, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    if path.exists():
        try:
            _read_checkpoint(path)
            os.replace(path, _previous(path))
        except ValueError:
            pass
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the renames themselves reach the disk
    finally:
        os.close(directory)


def _previous(path: Path) -> Path:
    return path.with_name(path.stem + ".prev" + path.suffix)


def _read_checkpoint(path: Path) -> dict:
    """A checkpoint's state, loaded with weights_only (tensors and plain containers: no code runs
    from the file), or ValueError saying what is wrong with it."""
    try:
        state = torch.load(path, weights_only=True)
    except Exception as error:  # torch raises RuntimeError, EOFError, UnpicklingError, ... by damage
        reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else "the file ends early"
        raise ValueError(f"{path} cannot be read as a checkpoint ({type(error).__name__}: {reason})") from None
    missing = CHECKPOINT_KEYS - set(state) if isinstance(state, dict) else CHECKPOINT_KEYS
    if missing:
        raise ValueError(f"{path} is not a checkpoint of aevb-fast train: it lacks {', '.join(sorted(missing))}")
    return state


# Settings a resumed run must share with the checkpoint's: they fix the model, the data order and
# the noise. The rest (samples, eval_every, device, backend, out, figures) may change.
RUN_SETTINGS = ("dataset", "data_path", "latent_dim", "hidden_dim", "optimizer", "lr", "batch_size", "n_samples",
                "estimator", "seed")


def _check_same_run(saved: "TrainConfig", config: "TrainConfig", checkpoint: Path) -> None:
    changed = [f"{name} {getattr(saved, name)!r} -> {getattr(config, name)!r}" for name in RUN_SETTINGS
               if getattr(saved, name) != getattr(config, name)]
    if changed:
        raise ValueError(f"--resume: {checkpoint} is a run with other settings ({'; '.join(changed)}): resume it "
                         "with its own settings, or train into another --out")


def load_checkpoint(out: str | Path) -> dict:
    """The newest readable checkpoint of a run: checkpoint.pt, or, if that is damaged or missing,
    checkpoint.prev.pt with a warning; ValueError naming both if neither can be read."""
    path = Path(out) / "checkpoint.pt"
    if not path.is_file() and not _previous(path).is_file():
        raise ValueError(f"{path} is missing: give a directory that aevb-fast train wrote")
    try:
        return _read_checkpoint(path)
    except ValueError as newest:
        try:
            state = _read_checkpoint(_previous(path))
        except ValueError as previous:
            raise ValueError(f"no usable checkpoint in {out}: {newest}; {previous}") from None
        print(f"aevb-fast: {newest}; using {_previous(path)} (samples {state['samples']:,})", file=sys.stderr)
        return state


def train(config: TrainConfig, resume: bool = False, progress: bool | None = None) -> VAE:
    """Trains (or, with resume, continues) the run of `config`; returns the model. progress: a
    one-line progress display on stderr (default: when stderr is a terminal). Under torchrun, every
    rank calls this: each trains on its share of every global minibatch (DistributedDataParallel
    averages the gradients), the metrics are reduced over the ranks, and rank 0 alone writes."""
    config.check()
    ranks = distributed.start(config.device)
    try:
        return _train(config, ranks, resume, progress)
    finally:
        distributed.stop(ranks)


def _train(config: TrainConfig, ranks: distributed.Ranks, resume: bool, progress: bool | None) -> VAE:
    check_batch(config.batch_size, ranks.world_size)
    progress = ranks.main and (sys.stderr.isatty() if progress is None else progress)
    if config.figures:
        plots.pyplot()  # fail now, not after the training, if matplotlib is missing
    out = Path(config.out)
    if ranks.main:
        out.mkdir(parents=True, exist_ok=True)
    source = open_source(config.dataset, config.data_path)
    torch.manual_seed(config.seed)
    model = VAE(source.dim, config.hidden_dim or HIDDEN[source.likelihood], config.latent_dim,
                source.likelihood).to(ranks.device)
    optimizer_class = torch.optim.Adagrad if config.optimizer == "adagrad" else torch.optim.Adam
    optimizer = optimizer_class(model.parameters(), lr=config.lr or STEP_SIZE[config.optimizer])
    stream = source.minibatches(config.batch_size, config.seed, ranks.rank, ranks.world_size)
    seen, wall, rows = 0, 0.0, []

    checkpoint = out / "checkpoint.pt"
    if resume and (checkpoint.exists() or _previous(checkpoint).exists()):
        state = load_checkpoint(out)
        _check_same_run(TrainConfig(**state["config"]), config, checkpoint)
        if len(state["rng"]) != ranks.world_size:
            raise ValueError(f"--resume: {checkpoint} was written by {len(state['rng'])} process(es), this run has "
                             f"{ranks.world_size}: resume with as many (each one's data and noise streams)")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        stream.load_state_dict(state["data"][ranks.rank])
        torch.set_rng_state(state["rng"][ranks.rank])
        seen, wall, rows = state["samples"], state["wall_s"], state["metrics"]

    # DDP averages the ranks' gradients: of per-datapoint means over equal shares, that is the mean
    # over the global minibatch, so the paper's per-datapoint scaling holds for any number of ranks.
    step_model = DistributedDataParallel(model) if distributed.grouped() else model
    if config.compile:
        # fallback_random: the noise keys come from torch's generator as in eager mode, so a compiled
        # run draws the noise an eager one does (and resumes the same way).
        step_model = torch.compile(step_model, options={"fallback_random": True})
    share = config.batch_size // ranks.world_size
    batch_rows = (ranks.rank * share, config.batch_size)
    started, window = time.perf_counter(), []  # the bounds of the minibatches since the last evaluation
    while seen < config.samples:
        x = datasets.to_unit(stream.next().to(ranks.device))
        optimizer.zero_grad(set_to_none=True)
        with _precision(config, ranks.device):
            loss = step_model(x, n_samples=config.n_samples, estimator=config.estimator, backend=config.backend,
                              fused_head=config.fused_head, batch_rows=batch_rows)
        (loss + _log_prior_share(model, source.n_train)).backward()
        optimizer.step()
        seen += config.batch_size
        window.append(-loss.item())
        elapsed = wall + time.perf_counter() - started
        if progress:
            print(f"\r{seen:>12,} samples  bound {sum(window) / len(window):9.2f}  {seen / elapsed:8,.0f} samples/s",
                  end="", file=sys.stderr, flush=True)
        if seen % config.eval_every < config.batch_size or seen >= config.samples:
            window.clear()
            train_bound, test_bound = (_bound(model, source, split, config, ranks, seen) for split in ("train", "test"))
            rows.append(dict(zip(METRICS, (seen, train_bound, test_bound, elapsed, seen / elapsed))))
            # Every rank's place in its data and noise streams, so that each resumes where it stood.
            streams, rngs = distributed.gather(stream.state_dict(), ranks), distributed.gather(torch.get_rng_state(), ranks)
            if ranks.main:
                _write_metrics(rows, out)
                _save_atomically({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "data": streams,
                                  "rng": rngs, "samples": seen, "wall_s": elapsed, "metrics": rows,
                                  "config": dataclasses.asdict(config)}, checkpoint)
            distributed.barrier(ranks)  # no rank runs ahead of a checkpoint that is not yet on disk
    if progress:
        print(file=sys.stderr)
    if config.figures and ranks.main:
        plots.bound_curve(rows, source.name, config.latent_dim, out / "bound.png")
        plots.samples(model, source.image_shape, out / "samples.png")
        if config.latent_dim == 2:
            plots.manifold(model, source.image_shape, out / "manifold.png")
    return model


def _precision(config: TrainConfig, device: torch.device):
    """bfloat16 autocast for precision="bfloat16" (matrix products in bfloat16, the bound's sums in
    float32); nothing for "float32"."""
    if config.precision == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def _bound(model: VAE, source, split: str, config: TrainConfig, ranks: distributed.Ranks, seen: int) -> float:
    """The bound per datapoint (estimator B) on the first eval_rows rows of a split, the chunks
    shared out over the ranks. Each chunk's noise comes from (seed, samples, chunk), so the value
    does not depend on the number of ranks, and evaluating leaves the training's noise alone."""
    total, count = 0.0, 0
    with torch.random.fork_rng(devices=[]), torch.no_grad(), _precision(config, ranks.device):
        for index, chunk in shares(source.chunks(split, config.eval_rows), ranks.rank, ranks.world_size):
            torch.manual_seed(((config.seed * 1_000_003 + seen) * 1_009 + index * 2 + (split == "test")) % 2**63)
            x = datasets.to_unit(chunk.to(ranks.device))
            total -= model(x, reduction="sum", backend=config.backend).item()
            count += chunk.shape[0]
    total, count = distributed.sum_over_ranks([total, count], ranks)
    return total / count if count else math.nan


def load_run(out: str | Path) -> tuple[VAE, torch.Tensor, TrainConfig]:
    """The model of a run's last checkpoint (on the run's device type), its data set's test rows
    (read into memory) and its settings."""
    state = load_checkpoint(out)
    config = TrainConfig(**state["config"])
    source = open_source(config.dataset, config.data_path)
    model = VAE(source.dim, config.hidden_dim or HIDDEN[source.likelihood], config.latent_dim,
                source.likelihood)
    model.load_state_dict(state["model"])
    chunks = list(source.chunks("test"))
    test = torch.cat(chunks) if chunks else torch.empty(0, source.dim, dtype=torch.uint8)
    return model.to(torch.device(config.device).type), test, config


def _write_metrics(rows: list[dict], out: Path) -> None:
    """metrics.csv and metrics.json, each replaced in one rename: a reader never sees half a file."""
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=METRICS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    for name, text in (("metrics.csv", table.getvalue()), ("metrics.json", json.dumps(rows, indent=1))):
        temporary = out / (name + ".tmp")
        temporary.write_text(text)
        os.replace(temporary, out / name)
