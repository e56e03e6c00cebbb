"""Training the paper's VAE on the SGVB bound (docs/paper.md): minibatches of M = 100, L = 1 sample,
estimator B, Adagrad, weights drawn from N(0, 0.01^2) and an N(0, I) prior on the weight matrices,
run for a number of training samples evaluated; the train and test bounds are logged against that
count as in the paper's Figure 2.

    config = TrainConfig(dataset="mnist5k", latent_dim=20, samples=1_000_000, out="runs/mnist5k-z20")
    train(config)       # writes metrics.csv/.json, checkpoint.pt and the figures into config.out

A run killed at any point continues with train(config, resume=True) from its last checkpoint and
reaches the parameters the uninterrupted run would have reached. The run directory is locked while
a run writes it, and one that holds a run is refused unless resumed or overwritten; checkpoints are
verified and name their data by a fingerprint (aevb_fast.training.run_files). The same function runs data-
parallel under torchrun (aevb_fast.training.distributed) and streams data sets larger than memory from
shards (dataset="shards", data_path the directory aevb-fast convert wrote; aevb_fast.training.minibatches).
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from .. import BACKENDS, LIKELIHOODS, SEED_LIMIT, backend_for, optim
from . import data as datasets
from . import distributed, run_files
from . import figures as plots
from ._checks import check_bound_options, check_choice, check_count, is_int
from .minibatches import SHARDS, Source, check_batch, open_source, shares
from .models import VAE
from .run_files import OtherRun, RunDirectory, RunFailed

OPTIMIZERS = ("adagrad", "adam")
PRECISIONS = ("float32", "bfloat16")
# Hidden units by decoder and Adagrad step size (docs/paper.md: 500 for MNIST's Bernoulli decoder, 200 for
# Frey Face's Gaussian one, shards taking the width of the data set their decoder matches; step sizes
# chosen from {0.01, 0.02, 0.1}).
STEP_SIZE = {"adagrad": 0.02, "adam": 1e-3}
METRICS = ("samples", "train_bound", "test_bound", "wall_s", "samples_per_s")


@dataclass
class TrainConfig:
    dataset: str = "mnist5k"  # or "shards", with data_path the shards' directory
    data_path: str | None = None
    latent_dim: int = 20
    hidden_dim: int | None = None  # None: the paper's width for the data set
    likelihood: str | None = None  # the decoder's p(x|z), one of LIKELIHOODS; None: the data set's own
    optimizer: str = "adagrad"
    lr: float | None = None  # None: the optimizer's default step size above
    batch_size: int = 100
    n_samples: int = 1
    estimator: str = "analytic"
    iwae: bool = False  # train on the importance-weighted bound with k = n_samples (estimator "mc")
    gradient: str = "standard"  # or "stl", "dreg" (iwae): aevb_fast.GRADIENTS
    beta: float = 1.0  # the KL term's weight
    kl_warmup: int = 0  # samples over which the KL term's weight rises linearly from 0 to beta
    free_bits: float = 0.0  # nats per latent unit (Kingma et al. 2016; estimator "analytic")
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
        """Every setting checked, before anything runs (None, where allowed, is the default; no
        other value stands for it)."""
        check_choice("dataset", self.dataset, (*datasets.DATASETS, SHARDS))
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_bound_options(self.estimator, self.iwae, self.gradient, self.beta, self.free_bits)
        if not (is_int(self.kl_warmup) and self.kl_warmup >= 0):
            raise ValueError(f"kl_warmup must be an int >= 0 (samples), got {self.kl_warmup!r}")
        check_choice("precision", self.precision, PRECISIONS)
        if self.likelihood is not None:
            check_choice("likelihood", self.likelihood, LIKELIHOODS)
        for name in ("latent_dim", "hidden_dim", "batch_size", "n_samples", "samples", "eval_every", "eval_rows"):
            if getattr(self, name) is not None or name not in ("hidden_dim", "eval_rows"):
                check_count(name, getattr(self, name))
        if not (is_int(self.seed) and 0 <= self.seed < SEED_LIMIT):
            raise ValueError(f"seed must be an int in [0, 2**63), got {self.seed!r}")
        if self.lr is not None and not (
            isinstance(self.lr, (int, float))
            and not isinstance(self.lr, bool)
            and math.isfinite(self.lr)
            and self.lr > 0
        ):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if self.fused_head not in (None, True, False):
            raise ValueError(f"fused_head must be True, False or None (where it saves memory), got {self.fused_head!r}")
        for name in ("compile", "figures"):
            if getattr(self, name) not in (True, False):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        for name in ("data_path", "out"):
            value = getattr(self, name)
            if (value is not None or name == "out") and not (isinstance(value, str) and value):
                raise ValueError(f"{name} must be a path, got {value!r}")
        distributed.check_device(self.device)
        if self.backend is not None:
            check_choice("backend", self.backend, BACKENDS)

    def resolved(self, source: Source) -> "TrainConfig":
        """The settings as the run uses them: defaults filled in, the data path absolute. The
        checkpoint keeps these, so that a resume compares the values used, however written."""
        return dataclasses.replace(
            self,
            data_path=None if self.data_path is None else str(Path(self.data_path).resolve()),
            hidden_dim=LIKELIHOODS[source.likelihood].hidden_dim if self.hidden_dim is None else self.hidden_dim,
            likelihood=source.likelihood if self.likelihood is None else self.likelihood,
            lr=STEP_SIZE[self.optimizer] if self.lr is None else self.lr,
        )


def _optimizer(config: TrainConfig, model: VAE, n_train: int, device: torch.device) -> torch.optim.Optimizer:
    """Adagrad or Adam over two groups: the weight matrices, then the rest. The N(0, I) prior on the
    weight matrices, 1/2 sum W^2 / N per datapoint, enters as what it does to a step, its gradient
    W / N: the weights' weight_decay 1/N, applied inside the optimizer's own pass over the
    parameters. As a loss term it cost a graph of squares, sums and their backward, 2.5 of a 6.9 ms
    step on 2 CPU cores. (The authors' code adds M/N of the prior's gradient to each minibatch's
    summed bound; per datapoint that is 1/N.)

    Adagrad is aevb_fast.optim.Adagrad: the decay pulls the weights of inputs that never occur
    (MNIST's blank border) through float32's denormal range, where torch's fused CPU step of the
    784-500-20 model took 1.16 ms of a 4.0 ms training step on 2 cores; flushed to zero there it
    takes 0.65 ms. Adam is torch's: fused on the CPU (one pass over the parameters instead of one
    per operation), foreach on CUDA."""
    weights, others = _groups(model)
    groups = [{"params": [p for _, p in weights], "weight_decay": 1 / n_train}, {"params": [p for _, p in others]}]
    if config.optimizer == "adagrad":
        return optim.Adagrad(groups, lr=config.lr)
    return torch.optim.Adam(groups, lr=config.lr, fused=True if device.type == "cpu" else None)


def _groups(model: VAE) -> tuple[list, list]:
    """(name, parameter) pairs of the weight matrices and of the rest, in the model's order."""
    named = list(model.named_parameters())
    return [(n, p) for n, p in named if n.endswith("weight")], [(n, p) for n, p in named if not n.endswith("weight")]


def _regrouped(saved: dict, model: VAE, optimizer: torch.optim.Optimizer) -> dict:
    """A checkpoint's optimizer state in this run's two groups. Checkpoints written before the prior
    moved into the optimizer hold one group over the model's parameters in order (the prior was a
    loss term then, the same gradient): their state is handed on to the same parameters."""
    if len(saved["param_groups"]) != 1:
        return saved
    (group,) = saved["param_groups"]
    position = {name: i for i, (name, _) in enumerate(model.named_parameters())}
    weights, others = _groups(model)
    order = [position[name] for name, _ in weights + others]  # new index j: the parameter at model position order[j]
    ids = group["params"]
    if len(ids) != len(order):
        raise ValueError(f"the optimizer holds {len(ids)} parameters, the model {len(order)}")
    state = {j: saved["state"][ids[i]] for j, i in enumerate(order) if ids[i] in saved["state"]}
    decay = optimizer.param_groups[0]["weight_decay"]
    return {
        "state": state,
        "param_groups": [
            dict(group, params=list(range(len(weights))), weight_decay=decay),
            dict(group, params=list(range(len(weights), len(order)))),
        ],
    }


# Settings a resumed run must share with the checkpoint's: they fix the model, the data order and
# the noise (the data itself is compared by its fingerprint). The rest (samples, eval_every,
# eval_rows, device, backend, fused_head, precision, compile, out, figures) may change.
# Settings added since checkpoints were first written, and what a checkpoint without one ran with.
ADDED_SETTINGS = {
    "likelihood": None,
    "iwae": False,
    "gradient": "standard",
    "beta": 1.0,
    "kl_warmup": 0,
    "free_bits": 0.0,
}
RUN_SETTINGS = (
    "dataset",
    "latent_dim",
    "hidden_dim",
    "likelihood",
    "iwae",
    "gradient",
    "beta",
    "kl_warmup",
    "free_bits",
    "optimizer",
    "lr",
    "batch_size",
    "n_samples",
    "estimator",
    "seed",
)


def load_checkpoint(out: str | Path, use: Callable[[dict], object] = lambda state: state, warn: bool = True):
    """use(state) of the newest checkpoint of a run that reads, verifies, holds settings this
    version knows, and that `use` accepts (ValueError otherwise): checkpoint.pt, or else
    checkpoint.prev.pt with a warning; ValueError naming both if neither serves."""
    return run_files.load_checkpoint(out, lambda state: use(_with_settings(state)), warn)


def _with_settings(state: dict) -> dict:
    """state with its settings as a checked TrainConfig under "config"; ValueError if they are not
    the settings of aevb-fast train."""
    saved = state["config"]
    names = {field.name for field in dataclasses.fields(TrainConfig)}
    if not isinstance(saved, dict):
        raise ValueError(f"the checkpoint's settings are a {type(saved).__name__}, not a dict")
    unknown, missing = sorted(set(saved) - names, key=str), sorted(names - set(saved) - set(ADDED_SETTINGS))
    if unknown or missing:
        raise ValueError(
            "the checkpoint's settings are not those of aevb-fast train: "
            + "; ".join(
                part
                for part in (
                    unknown and f"unknown {', '.join(map(str, unknown))}",
                    missing and f"missing {', '.join(missing)}",
                )
                if part
            )
        )
    config = TrainConfig(**{**ADDED_SETTINGS, **saved})
    try:
        config.check()
    except ValueError as error:
        raise ValueError(f"the checkpoint's settings are invalid: {error}") from None
    return {**state, "config": config}


def _check_same_run(
    saved: TrainConfig, fingerprint: str, config: TrainConfig, source: Source, checkpoint: Path, warn: bool
) -> None:
    """OtherRun unless the checkpoint is of the run `config` describes: its settings and its data
    (the same fingerprint; the same data found at another path are accepted with a note)."""
    changed = [
        f"{name} {getattr(saved, name)!r} -> {getattr(config, name)!r}"
        for name in RUN_SETTINGS
        if getattr(saved, name) != getattr(config, name)
    ]
    if changed:
        raise OtherRun(
            f"--resume: {checkpoint} is a run with other settings ({'; '.join(changed)}): resume it "
            "with its own settings, or train into another --out"
        )
    if fingerprint != source.fingerprint:
        raise OtherRun(
            f"--resume: {checkpoint} trained on other data: {saved.data_path or saved.dataset} "
            f"(fingerprint {fingerprint}) then, {config.data_path or config.dataset} (fingerprint "
            f"{source.fingerprint}) now; give the run's own data, or train into another --out"
        )
    if saved.data_path != config.data_path and warn:
        print(
            f"aevb-fast: the data at {config.data_path} are the run's own, read from {saved.data_path} before",
            file=sys.stderr,
        )


def _restore(state: dict, model: VAE, optimizer: torch.optim.Optimizer, stream, ranks: distributed.Ranks) -> None:
    """The checkpoint's parameters, optimizer state, this rank's data stream and generator, or
    ValueError if they do not fit this run's model and processes."""
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(_regrouped(state["optimizer"], model, optimizer))
        for index, parameter in enumerate(model.parameters()):
            for name, value in optimizer.state[parameter].items():
                if value.dim() and value.shape != parameter.shape:
                    raise ValueError(
                        f"the optimizer's {name} of parameter {index} is {list(value.shape)}, not "
                        f"{list(parameter.shape)}"
                    )
        stream.load_state_dict(state["data"][ranks.rank])
        torch.set_rng_state(state["rng"][ranks.rank])
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError, AttributeError) as error:
        reason = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
        raise ValueError(f"the checkpoint does not fit the run's model ({reason})") from None


def train(config: TrainConfig, resume: bool = False, progress: bool | None = None, overwrite: bool = False) -> VAE:
    """Trains (or, with resume, continues) the run of `config`; returns the model. progress: a
    one-line progress display on stderr (default: when stderr is a terminal). overwrite: replace a
    run that config.out holds (without it or resume, such a directory is refused). Under torchrun,
    every rank calls this: each trains on its share of every global minibatch (DistributedDataParallel
    averages the gradients), the metrics are reduced over the ranks, and rank 0 alone writes.

    Raises ValueError for settings, data or a directory that cannot serve the run, before training;
    RunFailed when the run stops on its own (it diverged, or --out could not be written), saying
    what is kept."""
    config.check()
    ranks = distributed.start(config.device)
    try:
        backend_for(ranks.device, config.backend)
        check_batch(config.batch_size, ranks.world_size)
        if config.figures:
            plots.pyplot()  # fail now, not after the training, if matplotlib is missing
        source = open_source(config.dataset, config.data_path)
        config = config.resolved(source)
        stream = source.minibatches(config.batch_size, config.seed, ranks.rank, ranks.world_size, ranks.device)
        with contextlib.ExitStack() as held:
            run, problem = None, None
            if ranks.main:  # rank 0 alone writes; every rank stops if it cannot
                try:
                    run = held.enter_context(RunDirectory(config.out, resume=resume, overwrite=overwrite))
                except ValueError as error:
                    problem = str(error)
            problem = distributed.first_problem(problem, ranks)
            if problem:
                raise ValueError(problem)
            return _train(config, source, stream, ranks, run, resume, progress)
    finally:
        distributed.stop(ranks)


def _train(
    config: TrainConfig,
    source: Source,
    stream,
    ranks: distributed.Ranks,
    run: RunDirectory | None,
    resume: bool,
    progress: bool | None,
) -> VAE:
    progress = ranks.main and (sys.stderr.isatty() if progress is None else progress)
    out = Path(config.out)
    torch.manual_seed(config.seed)
    model = VAE(source.dim, config.hidden_dim, config.latent_dim, config.likelihood).to(ranks.device)
    optimizer = _optimizer(config, model, source.n_train, ranks.device)
    seen, wall, rows = 0, 0.0, []

    checkpoint = out / run_files.CHECKPOINT
    if resume and (checkpoint.exists() or (out / run_files.PREVIOUS).exists()):

        def use(state: dict) -> dict:
            saved = state["config"].resolved(source)  # a run from before --likelihood: its data set's
            _check_same_run(saved, state["data_fingerprint"], config, source, checkpoint, ranks.main)
            if len(state["rng"]) != ranks.world_size or len(state["data"]) != ranks.world_size:
                raise OtherRun(
                    f"--resume: {checkpoint} was written by {len(state['rng'])} process(es), this run has "
                    f"{ranks.world_size}: resume with as many (each one's data and noise streams)"
                )
            _restore(state, model, optimizer, stream, ranks)
            if not (is_int(state["samples"]) and state["samples"] >= 0 and isinstance(state["metrics"], list)):
                raise ValueError("the checkpoint's sample count or metrics are malformed")
            return state

        state = load_checkpoint(out, use, warn=ranks.main)
        seen, wall, rows = state["samples"], float(state["wall_s"]), state["metrics"]
    elif resume and ranks.main:
        print(f"aevb-fast: --resume: {out} holds no checkpoint; a new run starts", file=sys.stderr)
    saved_at = seen if seen else None  # samples of the newest checkpoint on disk

    # DDP averages the ranks' gradients: of per-datapoint means over equal shares, that is the mean
    # over the global minibatch, so the paper's per-datapoint scaling holds for any number of ranks.
    step_model = DistributedDataParallel(model) if distributed.grouped() else model
    if config.compile:
        # fallback_random: the noise keys come from torch's generator as in eager mode, so a compiled
        # run draws the noise an eager one does (and resumes the same way).
        step_model = torch.compile(step_model, options={"fallback_random": True})
    share = config.batch_size // ranks.world_size
    batch_rows = (ranks.rank * share, config.batch_size)
    started, shown = time.perf_counter(), 0.0
    # The minibatches' bounds since the last evaluation, summed where the step runs: read only at an
    # evaluation (and, on a terminal, for the progress line twice a second), so a step never waits
    # for the device.
    window, window_steps = torch.zeros((), dtype=torch.float64, device=ranks.device), 0
    while seen < config.samples:
        x = datasets.to_unit(stream.next().to(ranks.device))
        optimizer.zero_grad(set_to_none=True)
        with _precision(config, ranks.device):
            loss = step_model(
                x,
                n_samples=config.n_samples,
                estimator=config.estimator,
                iwae=config.iwae,
                gradient=config.gradient,
                beta=_beta(config, seen),
                free_bits=config.free_bits,
                backend=config.backend,
                fused_head=config.fused_head,
                batch_rows=batch_rows,
            )
        loss.backward()
        optimizer.step()
        window.sub_(loss.detach())
        seen += config.batch_size
        window_steps += 1
        elapsed = wall + time.perf_counter() - started
        if progress and elapsed - shown >= 0.5:  # this rank's share of the minibatches
            shown = elapsed
            print(
                f"\r{seen:>12,} samples  bound {window.item() / window_steps:9.2f}  {seen / elapsed:8,.0f} samples/s",
                end="",
                file=sys.stderr,
                flush=True,
            )
        if seen % config.eval_every < config.batch_size or seen >= config.samples:
            # The global minibatches' bounds, the same on every rank, so that all stop together on a NaN.
            bound = distributed.sum_over_ranks([window.item()], ranks)[0] / ranks.world_size
            if not math.isfinite(bound):
                first = seen - (window_steps - 1) * config.batch_size
                _diverged(
                    f"the bound of the minibatch at {seen:,} samples is {bound}"
                    if window_steps == 1
                    else f"the bound of a minibatch between {first:,} and {seen:,} samples is {bound}",
                    checkpoint,
                    saved_at,
                )
            window.zero_()
            window_steps = 0
            elapsed = wall + time.perf_counter() - started  # the device has caught up with the steps
            train_bound, test_bound = (_bound(model, source, split, config, ranks, seen) for split in ("train", "test"))
            if not (math.isfinite(train_bound) and math.isfinite(test_bound)):
                _diverged(
                    f"the bounds at {seen:,} samples are {train_bound} (train) and {test_bound} (test)",
                    checkpoint,
                    saved_at,
                )
            rows.append(dict(zip(METRICS, (seen, train_bound, test_bound, elapsed, seen / elapsed))))
            # Every rank's place in its data and noise streams, so that each resumes where it stood.
            streams, rngs = (
                distributed.gather(stream.state_dict(), ranks),
                distributed.gather(torch.get_rng_state(), ranks),
            )
            problem = None
            if ranks.main:
                try:
                    run.save_checkpoint(
                        {
                            "model": model.state_dict(),
                            "optimizer": optimizer.state_dict(),
                            "data": streams,
                            "rng": rngs,
                            "samples": seen,
                            "wall_s": elapsed,
                            "metrics": rows,
                            "config": dataclasses.asdict(config),
                            "data_fingerprint": source.fingerprint,
                        }
                    )
                    _write_metrics(rows, run)
                except OSError as error:
                    problem = (
                        f"{out} cannot be written ({error.strerror or error}) at {seen:,} samples: "
                        f"{_kept(checkpoint, saved_at)}; make room and continue with --resume"
                    )
            # No rank runs ahead of a checkpoint that is not yet on disk, or past one that failed.
            problem = distributed.first_problem(problem, ranks)
            if problem:
                raise RunFailed(problem)
            saved_at = seen
    if progress:
        print(file=sys.stderr)
    if config.figures and ranks.main:
        plots.bound_curve(rows, source.name, config.latent_dim, out / "bound.png")
        plots.samples(model, source.image_shape, out / "samples.png")
        if config.latent_dim == 2:
            plots.manifold(model, source.image_shape, out / "manifold.png")
    return model


def _kept(checkpoint: Path, saved_at: int | None) -> str:
    if saved_at is None:
        return "no checkpoint was written"
    return f"the last good checkpoint, {checkpoint} at {saved_at:,} samples, is kept"


def _diverged(what: str, checkpoint: Path, saved_at: int | None) -> None:
    # Resuming would replay the same steps: a smaller step size needs a new run.
    raise RunFailed(
        f"training diverged: {what}; {_kept(checkpoint, saved_at)}; train anew with a smaller --lr "
        "(into another --out, or with --overwrite)"
    )


def _precision(config: TrainConfig, device: torch.device):
    """bfloat16 autocast for precision="bfloat16" (matrix products in bfloat16, the bound's sums in
    float32); nothing for "float32"."""
    if config.precision == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def _beta(config: TrainConfig, seen: int) -> float:
    """The KL term's weight for the minibatch after `seen` samples: beta, rising linearly from 0
    over the first kl_warmup samples."""
    if seen >= config.kl_warmup:
        return config.beta
    return config.beta * seen / config.kl_warmup


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


def load_run(out: str | Path, data_path: str | None = None) -> tuple[VAE, torch.Tensor, TrainConfig]:
    """The model of a run's last checkpoint (on a GPU if the run used one and there is one here,
    else on the CPU), its data set's test rows (read into memory) and its settings. The data must
    be the run's own (the checkpoint's fingerprint); data_path says where they are now, if moved."""

    def use(state: dict):
        config = state["config"]
        source = open_source(config.dataset, config.data_path if data_path is None else data_path)
        if source.fingerprint != state["data_fingerprint"]:
            raise OtherRun(
                f"{out} trained on {config.data_path or config.dataset} (fingerprint "
                f"{state['data_fingerprint']}), but {data_path or config.data_path or config.dataset} "
                f"holds other data now (fingerprint {source.fingerprint})"
            )
        config = config.resolved(source)  # a run from before --likelihood: its data set's
        model = VAE(source.dim, config.hidden_dim, config.latent_dim, config.likelihood)
        try:
            model.load_state_dict(state["model"])
        except RuntimeError as error:
            raise ValueError(f"the checkpoint does not fit the run's model ({str(error).splitlines()[0]})") from None
        return model, source, config

    model, source, config = load_checkpoint(out, use)
    chunks = list(source.chunks("test"))
    test = torch.cat(chunks) if chunks else torch.empty(0, source.dim, dtype=torch.uint8)
    # A GPU run is evaluated on a GPU where there is one, and on the CPU elsewhere.
    device = "cuda" if torch.device(config.device).type == "cuda" and torch.cuda.is_available() else "cpu"
    return model.to(device), test, config


def _write_metrics(rows: list[dict], run: RunDirectory) -> None:
    """metrics.csv and metrics.json, each replaced in one rename: a reader never sees half a file."""
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=METRICS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    run.write_text("metrics.csv", table.getvalue())
    run.write_text("metrics.json", json.dumps(rows, indent=1))
