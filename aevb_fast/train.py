"""Training the paper's VAE on the SGVB bound (PAPER.md): minibatches of M = 100, L = 1 sample,
estimator B, Adagrad, weights drawn from N(0, 0.01^2) and an N(0, I) prior on the weight matrices,
run for a number of training samples evaluated; the train and test bounds are logged against that
count as in the paper's Figure 2.

    config = TrainConfig(dataset="mnist5k", latent_dim=20, samples=1_000_000, out="runs/mnist5k-z20")
    train(config)       # writes metrics.csv/.json, checkpoint.pt and the figures into config.out

A run killed at any point continues with train(config, resume=True) from its last checkpoint and
reaches the parameters the uninterrupted run would have reached.
"""

import csv
import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from . import data as datasets
from . import figures as plots
from .evaluate import lower_bound
from .functional import ESTIMATORS, check_choice
from .models import VAE

OPTIMIZERS = ("adagrad", "adam")
# Hidden units and Adagrad step size per data set (PAPER.md: 500 for MNIST, 200 for Frey Face; step
# sizes chosen from {0.01, 0.02, 0.1}).
HIDDEN = {"mnist5k": 500, "mnist": 500, "frey": 200}
STEP_SIZE = {"adagrad": 0.02, "adam": 1e-3}
METRICS = ("samples", "train_bound", "test_bound", "wall_s", "samples_per_s")


@dataclass
class TrainConfig:
    dataset: str = "mnist5k"
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
    seed: int = 0
    device: str = "cpu"
    backend: str | None = None
    fused_head: bool | None = None  # None: where it saves memory (VAE.forward)
    out: str = "runs/default"
    figures: bool = True  # bound.png, samples.png and (Nz = 2) manifold.png at the end

    def check(self) -> None:
        check_choice("dataset", self.dataset, datasets.DATASETS)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("estimator", self.estimator, ESTIMATORS)
        for name in ("latent_dim", "batch_size", "n_samples", "samples", "eval_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.lr is not None and not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if self.fused_head not in (None, True, False):
            raise ValueError(f"fused_head must be True, False or None (where it saves memory), got {self.fused_head!r}")


def _log_prior_share(model: VAE, n_train: int) -> torch.Tensor:
    """The N(0, I) prior on the weight matrices, per datapoint: 1/2 sum W^2 / N. (The authors' code
    adds M/N of the prior's gradient to each minibatch's summed bound; per datapoint that is 1/N.)"""
    return 0.5 * sum(p.pow(2).sum() for n, p in model.named_parameters() if n.endswith("weight")) / n_train


CHECKPOINT_KEYS = {"model", "optimizer", "order", "rng", "samples", "wall_s", "metrics", "permutation", "position",
                   "config"}


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
    one-line progress display on stderr (default: when stderr is a terminal)."""
    config.check()
    progress = sys.stderr.isatty() if progress is None else progress
    if config.figures:
        plots.pyplot()  # fail now, not after the training, if matplotlib is missing
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    data = datasets.load(config.dataset, config.data_path)
    torch.manual_seed(config.seed)
    model = VAE(data.dim, config.hidden_dim or HIDDEN[config.dataset], config.latent_dim, data.likelihood)
    model.to(config.device)
    optimizer_class = torch.optim.Adagrad if config.optimizer == "adagrad" else torch.optim.Adam
    optimizer = optimizer_class(model.parameters(), lr=config.lr or STEP_SIZE[config.optimizer])
    n_train = data.train.shape[0]
    order = torch.Generator().manual_seed(config.seed)  # minibatch order; the noise uses torch's generator
    permutation, position = torch.randperm(n_train, generator=order), 0
    seen, wall, rows = 0, 0.0, []

    checkpoint = out / "checkpoint.pt"
    if resume and (checkpoint.exists() or _previous(checkpoint).exists()):
        state = load_checkpoint(out)
        _check_same_run(TrainConfig(**state["config"]), config, checkpoint)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        order.set_state(state["order"])
        torch.set_rng_state(state["rng"])
        permutation, position = state["permutation"], state["position"]
        seen, wall, rows = state["samples"], state["wall_s"], state["metrics"]

    started, window = time.perf_counter(), []  # the bounds of the minibatches since the last evaluation
    while seen < config.samples:
        if position + config.batch_size > n_train:  # a new epoch: a fresh order
            permutation, position = torch.randperm(n_train, generator=order), 0
        x = datasets.to_unit(data.train[permutation[position:position + config.batch_size]].to(config.device))
        position += config.batch_size
        optimizer.zero_grad(set_to_none=True)
        loss = model(x, n_samples=config.n_samples, estimator=config.estimator, backend=config.backend,
                     fused_head=config.fused_head)
        (loss + _log_prior_share(model, n_train)).backward()
        optimizer.step()
        seen += config.batch_size
        window.append(-loss.item())
        elapsed = wall + time.perf_counter() - started
        if progress:
            print(f"\r{seen:>12,} samples  bound {sum(window) / len(window):9.2f}  {seen / elapsed:8,.0f} samples/s",
                  end="", file=sys.stderr, flush=True)
        if seen % config.eval_every < config.batch_size or seen >= config.samples:
            window.clear()
            train_bound, test_bound = (lower_bound(model, part, device=config.device, backend=config.backend)
                                       for part in (data.train, data.test))
            rows.append(dict(zip(METRICS, (seen, train_bound, test_bound, elapsed, seen / elapsed))))
            _write_metrics(rows, out)
            _save_atomically({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                              "order": order.get_state(), "rng": torch.get_rng_state(), "samples": seen,
                              "wall_s": elapsed, "metrics": rows, "permutation": permutation, "position": position,
                              "config": dataclasses.asdict(config)}, checkpoint)
    if progress:
        print(file=sys.stderr)
    if config.figures:
        plots.bound_curve(rows, config.dataset, config.latent_dim, out / "bound.png")
        plots.samples(model, data.image_shape, out / "samples.png")
        if config.latent_dim == 2:
            plots.manifold(model, data.image_shape, out / "manifold.png")
    return model


def load_run(out: str | Path) -> tuple[VAE, datasets.Dataset, TrainConfig]:
    """The model of a run's last checkpoint, with its data set and settings."""
    state = load_checkpoint(out)
    config = TrainConfig(**state["config"])
    data = datasets.load(config.dataset, config.data_path)
    model = VAE(data.dim, config.hidden_dim or HIDDEN[config.dataset], config.latent_dim, data.likelihood)
    model.load_state_dict(state["model"])
    return model.to(config.device), data, config


def _write_metrics(rows: list[dict], out: Path) -> None:
    with open(out / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=METRICS)
        writer.writeheader()
        writer.writerows(rows)
    (out / "metrics.json").write_text(json.dumps(rows, indent=1))
