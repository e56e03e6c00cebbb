"""Where training reads its minibatches: a data set held in memory (aevb_fast.training.data) or one streamed
from shards (aevb_fast.training.shards), seen by one data-parallel rank.

    source = open_source("mnist", "path/to/mnist")       # or ("shards", "path/to/shards")
    stream = source.minibatches(batch_size=100, seed=0, rank=0, world_size=1)
    x = stream.next()                                     # this rank's uint8 rows [100 / world_size, D]
    state = stream.state_dict()                           # where the stream stands: resume from it

A global minibatch is batch_size rows; each of the world_size ranks takes batch_size / world_size
of them, rows [rank * m, (rank + 1) * m) of the global batch, and draws those rows' noise
(VAE.forward's batch_rows). In memory, every epoch is a permutation of the training rows drawn from
the seed, the global batches its consecutive slices (so any number of ranks sees the batches one
process would). From shards, each rank streams its own shards (ShardedSplit).
"""

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from . import data as datasets
from ._checks import is_int
from .shards import Shards

SHARDS = "shards"  # the dataset name under which training streams a directory of shards
EVAL_CHUNK = 1000  # rows per evaluation batch


@dataclass(frozen=True)
class Source:
    """A data set's description and its rows: `held` is a datasets.Dataset or a Shards; fingerprint
    names the data (cheaply: sizes and the ends of its files), for a checkpoint to keep."""

    name: str
    dim: int
    image_shape: tuple[int, int]
    likelihood: str
    n_train: int
    held: object
    fingerprint: str

    def minibatches(self, batch_size: int, seed: int, rank: int, world_size: int, device: torch.device | str = "cpu"):
        """This rank's minibatches on `device`: a data set in memory is copied there once (full MNIST
        is 47 MB of uint8) and its minibatches gathered there; shards are read on the host."""
        if batch_size > self.n_train:
            raise ValueError(
                f"batch_size {batch_size} is larger than the {self.n_train:,} training rows of {self.name}: "
                "a minibatch holds distinct rows of one epoch"
            )
        if isinstance(self.held, Shards):
            return ShardStream(self.held.split("train", rank, world_size), batch_size // world_size, seed)
        return MemoryStream(self.held.train.to(device), batch_size, seed, rank, world_size)

    def chunks(self, split: str, limit: int | None = None) -> Iterator[torch.Tensor]:
        """The first `limit` rows of a split (all by default) in a fixed order, EVAL_CHUNK at a time."""
        if isinstance(self.held, Shards):
            yield from self.held.rows(split, limit, EVAL_CHUNK) if split in self.held.splits else ()
            return
        rows = getattr(self.held, split)[:limit]
        for start in range(0, rows.shape[0], EVAL_CHUNK):
            yield rows[start : start + EVAL_CHUNK]


def open_source(dataset: str, path: str | None) -> Source:
    """The data set `dataset` (aevb_fast.training.data's names, or "shards" with `path` the shards' directory),
    which must hold train and test rows: training evaluates its bound on both."""
    if dataset == SHARDS:
        if path is None:
            raise ValueError("dataset='shards' needs a path: the directory aevb-fast convert wrote")
        held = Shards(path)
        for split in ("train", "test"):
            if split not in held.splits or held.split(split).rows == 0:
                raise ValueError(
                    f"{path} has no {split} rows: training needs train rows and evaluates its bound on "
                    "test rows too (aevb-fast convert holds out --test-fraction of the images)"
                )
        return Source(
            held.name, held.dim, held.image_shape, held.likelihood, held.split("train").rows, held, held.fingerprint()
        )
    data = datasets.load(dataset, path)
    return Source(
        data.name,
        data.dim,
        data.image_shape,
        data.likelihood,
        data.train.shape[0],
        data,
        datasets.fingerprint(dataset, path),
    )


class MemoryStream:
    """Global minibatches from a permutation of the rows per epoch; this rank's slice of each,
    gathered on the rows' device. The permutation is drawn on the host (the same order on every
    device) and goes to the rows' device once per epoch."""

    def __init__(self, rows: torch.Tensor, batch_size: int, seed: int, rank: int, world_size: int):
        self.rows, self.batch_size = rows, batch_size
        self.share = slice(rank * batch_size // world_size, (rank + 1) * batch_size // world_size)
        self.order = torch.Generator().manual_seed(seed)
        self._set_permutation(torch.randperm(rows.shape[0], generator=self.order), 0)

    def _set_permutation(self, permutation: torch.Tensor, position: int) -> None:
        self.permutation, self.position = permutation, position
        self._on_device = permutation.to(self.rows.device, non_blocking=True)

    def next(self) -> torch.Tensor:
        if self.position + self.batch_size > self.rows.shape[0]:  # a new epoch: a fresh order
            self._set_permutation(torch.randperm(self.rows.shape[0], generator=self.order), 0)
        batch = self._on_device[self.position : self.position + self.batch_size]
        self.position += self.batch_size
        return self.rows[batch[self.share]]

    def state_dict(self) -> dict:
        return {"order": self.order.get_state(), "permutation": self.permutation, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        """A state_dict() of a stream over as many rows; ValueError for anything else."""
        permutation, position, n = state["permutation"], state["position"], self.rows.shape[0]
        if not (
            isinstance(permutation, torch.Tensor)
            and permutation.dtype == torch.int64
            and permutation.shape == (n,)
            and torch.equal(permutation.sort().values, torch.arange(n))
        ):
            raise ValueError(f"the stream's permutation is not one of {n} rows")
        if not (is_int(position) and 0 <= position <= n):
            raise ValueError(f"the stream's position {position!r} does not lie in [0, {n}]")
        self.order.set_state(state["order"])
        self._set_permutation(permutation, position)


class ShardStream:
    """This rank's batches from its shards, epoch after epoch; resumable at (epoch, step)."""

    def __init__(self, split, batch_size: int, seed: int):
        self.split, self.batch_size, self.seed = split, batch_size, seed
        self.epoch, self.step, self._batches = 0, 0, None
        if split.steps_per_epoch(batch_size, seed, 0) == 0:
            raise ValueError(
                f"the train split's shards give no batch of {batch_size} rows per rank: use smaller "
                "batches or fewer ranks"
            )

    def next(self) -> torch.Tensor:
        while True:
            if self._batches is None:
                self._batches = self.split.batches(self.batch_size, self.seed, self.epoch, self.step)
            batch = next(self._batches, None)
            if batch is not None:
                self.step += 1
                return batch
            self.epoch, self.step, self._batches = self.epoch + 1, 0, None

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "step": self.step}

    def load_state_dict(self, state: dict) -> None:
        """A state_dict() of a stream; ValueError for anything else."""
        epoch, step = state["epoch"], state["step"]
        if not all(is_int(v) and v >= 0 for v in (epoch, step)):
            raise ValueError(f"the stream's place (epoch {epoch!r}, step {step!r}) is not two counts")
        self.epoch, self.step, self._batches = epoch, step, None


def shares(chunks: Iterator[torch.Tensor], rank: int, world_size: int) -> Iterator[tuple[int, torch.Tensor]]:
    """(index, chunk) for this rank's chunks: every world_size-th, from the rank-th."""
    for index, chunk in enumerate(chunks):
        if index % world_size == rank:
            yield index, chunk


def check_batch(batch_size: int, world_size: int) -> None:
    if batch_size % world_size:
        raise ValueError(
            f"batch_size {batch_size} must be a multiple of the {world_size} processes: each takes an "
            "equal share of the global minibatch"
        )
