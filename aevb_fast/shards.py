"""A streaming data set: a directory of uint8 shards that are read memory-mapped, so a data set
larger than RAM trains without ever being loaded whole.

    aevb-fast convert --dataset mnist --data-path DIR --out shards/mnist     # or --images, --array
    split = Shards("shards/mnist").split("train", rank=0, world_size=1)
    for batch in split.batches(batch_size=100, seed=0, epoch=0):            # uint8 [100, 784]
        ...

Layout: DIR/index.json names the format and version, the data set's name, row width D, image
shape and decoder likelihood, and per split its shard files and their row counts; each shard is a
NumPy .npy file of uint8 [rows, D].

Order: each epoch deals the split's shards out in an order drawn from (seed, epoch); rank r of
world_size takes every world_size-th of them, so the ranks read disjoint parts. A rank reads its
shards in turn into a buffer of buffer_rows rows, shuffles the buffer and yields it in batches: the
order is fixed by (seed, epoch, rank), whatever the machine. Every rank yields the same number of
batches (steps_per_epoch: the least any rank can fill; rows beyond it are left for that epoch), as
data-parallel training needs.
"""

import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

FORMAT, VERSION = "aevb-fast-shards", 1
SHARD_ROWS = 10_000
BUFFER_ROWS = 20_000


def write(out: str | Path, splits: dict[str, np.ndarray | torch.Tensor], *, name: str, image_shape: tuple[int, int],
          likelihood: str, shard_rows: int = SHARD_ROWS) -> Path:
    """Writes splits ({"train": uint8 [N, D], "test": ...}) as shards of shard_rows rows into `out`
    (created; it must not hold shards already) and returns the index file's path. The index is
    written last, so a directory with an index holds every shard it names."""
    if isinstance(shard_rows, bool) or not isinstance(shard_rows, int) or shard_rows < 1:
        raise ValueError(f"shard_rows must be a positive int, got {shard_rows!r}")
    out = Path(out)
    if (out / "index.json").exists():
        raise ValueError(f"{out} already holds a sharded data set (index.json); choose another directory")
    arrays = {split: np.asarray(rows) for split, rows in splits.items()}
    widths = {a.shape[1] if a.ndim == 2 else None for a in arrays.values()}
    for split, rows in arrays.items():
        if rows.dtype != np.uint8 or rows.ndim != 2:
            raise ValueError(f"split {split!r} must be uint8 [N, D], got {rows.dtype} {list(rows.shape)}")
    if len(widths) != 1:
        raise ValueError(f"every split must have the same row width D, got {sorted(map(str, widths))}")
    out.mkdir(parents=True, exist_ok=True)
    index = {"format": FORMAT, "version": VERSION, "name": name, "dim": widths.pop(), "image_shape": list(image_shape),
             "likelihood": likelihood, "splits": {}}
    for split, rows in arrays.items():
        files = []
        for number, start in enumerate(range(0, rows.shape[0], shard_rows)):
            file = f"{split}-{number:05d}.npy"
            np.save(out / file, np.ascontiguousarray(rows[start:start + shard_rows]))
            files.append({"file": file, "rows": min(shard_rows, rows.shape[0] - start)})
        index["splits"][split] = files
    path = out / "index.json"
    path.with_suffix(".tmp").write_text(json.dumps(index, indent=1))
    path.with_suffix(".tmp").replace(path)
    return path


class Shards:
    """A sharded data set on disk: its description (name, dim, image_shape, likelihood) and its splits."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        path = self.directory / "index.json"
        try:
            index = json.loads(path.read_text())
        except FileNotFoundError:
            raise ValueError(f"{path} is missing: {self.directory} is not a sharded data set "
                             "(write one with aevb-fast convert)") from None
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(f"{path} cannot be read ({error})") from None
        if not isinstance(index, dict) or index.get("format") != FORMAT or index.get("version") != VERSION:
            raise ValueError(f"{path} is not an index of format {FORMAT!r} version {VERSION}")
        self.name, self.dim, self.likelihood = index["name"], index["dim"], index["likelihood"]
        self.image_shape = tuple(index["image_shape"])
        self._splits = index["splits"]

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(self._splits)

    def split(self, name: str, rank: int = 0, world_size: int = 1, buffer_rows: int = BUFFER_ROWS) -> "ShardedSplit":
        if name not in self._splits:
            raise ValueError(f"{self.directory} has no split {name!r}; it has {', '.join(self._splits)}")
        return ShardedSplit(self, name, rank, world_size, buffer_rows)

    def rows(self, split: str, limit: int | None = None, chunk: int = 1000) -> Iterator[torch.Tensor]:
        """The first `limit` rows of a split (all by default) in index order, `chunk` rows at a time
        (the last may be shorter): a fixed order for evaluation, read shard by shard."""
        if split not in self._splits:
            raise ValueError(f"{self.directory} has no split {split!r}; it has {', '.join(self._splits)}")
        left = math.inf if limit is None else limit
        for block in self.blocks(self._splits[split], chunk):
            if left <= 0:
                return
            yield torch.from_numpy(block[:left] if left < block.shape[0] else block)
            left -= block.shape[0]

    def blocks(self, entries: list[dict], size: int) -> Iterator[np.ndarray]:
        """The rows of the shards `entries` names, in order, `size` at a time (the last block may be
        shorter), each block a copy in memory."""
        buffer, filled = np.empty((size, self.dim), np.uint8), 0
        for entry in entries:
            shard = self.shard(entry["file"], entry["rows"])
            at = 0
            while at < shard.shape[0]:
                take = min(size - filled, shard.shape[0] - at)
                buffer[filled:filled + take] = shard[at:at + take]
                filled, at = filled + take, at + take
                if filled == size:
                    yield buffer.copy()
                    filled = 0
        if filled:
            yield buffer[:filled].copy()

    def shard(self, file: str, rows: int) -> np.ndarray:
        """One shard, memory-mapped and checked against the index."""
        path = self.directory / file
        try:
            array = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as error:
            raise ValueError(f"{path} cannot be read as a shard ({error})") from None
        if array.dtype != np.uint8 or array.shape != (rows, self.dim):
            raise ValueError(f"{path} holds {array.dtype} {list(array.shape)}; the index names uint8 "
                             f"{[rows, self.dim]}")
        return array


class ShardedSplit:
    """One split of a sharded data set as seen by one rank (see the module's docstring for the order)."""

    def __init__(self, shards: Shards, name: str, rank: int, world_size: int, buffer_rows: int):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must lie in [0, world_size), got rank={rank}, world_size={world_size}")
        if isinstance(buffer_rows, bool) or not isinstance(buffer_rows, int) or buffer_rows < 1:
            raise ValueError(f"buffer_rows must be a positive int, got {buffer_rows!r}")
        self.shards, self.name, self.rank, self.world_size = shards, name, rank, world_size
        self.buffer_rows = buffer_rows
        self.files = shards._splits[name]
        if len(self.files) < world_size:
            raise ValueError(f"split {name!r} of {shards.directory} has {len(self.files)} shards, fewer than the "
                             f"{world_size} ranks: write it with smaller shards")

    @property
    def rows(self) -> int:
        """Rows in the whole split."""
        return sum(f["rows"] for f in self.files)

    def _dealt(self, seed: int, epoch: int) -> list[list[dict]]:
        order = torch.randperm(len(self.files), generator=torch.Generator().manual_seed(_mix(seed, epoch, -1)))
        shards = [self.files[i] for i in order.tolist()]
        return [shards[r::self.world_size] for r in range(self.world_size)]

    def steps_per_epoch(self, batch_size: int, seed: int, epoch: int) -> int:
        """Batches every rank yields in this epoch: the least any rank's shards fill."""
        return min(sum(f["rows"] for f in mine) for mine in self._dealt(seed, epoch)) // batch_size

    def batches(self, batch_size: int, seed: int = 0, epoch: int = 0, start: int = 0) -> Iterator[torch.Tensor]:
        """This rank's batches of the epoch, uint8 [batch_size, D], from the start-th on."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        steps = self.steps_per_epoch(batch_size, seed, epoch)
        if steps == 0:
            return
        generator = torch.Generator().manual_seed(_mix(seed, epoch, self.rank))
        pending, step = np.empty((0, self.shards.dim), np.uint8), 0
        for rows in self.shards.blocks(self._dealt(seed, epoch)[self.rank], self.buffer_rows):
            # The last buffer's leftover rows are shuffled in with the new ones.
            pending = np.concatenate([pending, rows]) if pending.size else rows
            pending = pending[torch.randperm(pending.shape[0], generator=generator).numpy()]
            while pending.shape[0] >= batch_size and step < steps:
                if step >= start:
                    yield torch.from_numpy(pending[:batch_size].copy())
                pending, step = pending[batch_size:], step + 1
            if step == steps:
                return


def _mix(seed: int, epoch: int, stream: int) -> int:
    """A generator seed for (seed, epoch, stream), distinct for distinct triples in practice."""
    return (seed * 1_000_003 + epoch * 10_007 + stream + 1) % (2**63)


def from_dataset(dataset, out: str | Path, shard_rows: int = SHARD_ROWS) -> Path:
    """Shards of one of aevb_fast.data's data sets (a Dataset)."""
    return write(out, {"train": dataset.train.numpy(), "test": dataset.test.numpy()}, name=dataset.name,
                 image_shape=dataset.image_shape, likelihood=dataset.likelihood, shard_rows=shard_rows)


def from_array(path: str | Path, out: str | Path, *, likelihood: str = "bernoulli", test_fraction: float = 0.1,
               shard_rows: int = SHARD_ROWS, seed: int = 0) -> Path:
    """Shards of an .npy array, or of the arrays "train" and "test" of an .npz file: images
    [N, H, W] (or rows [N, D] of square images), uint8, or floats in [0, 1] (stored as round(255 x)).
    A single array is split by a permutation from `seed`, test_fraction of it held out."""
    path = Path(path)
    try:
        loaded = np.load(path)
    except (OSError, ValueError) as error:
        raise ValueError(f"{path} cannot be read as an .npy or .npz array ({error})") from None
    if isinstance(loaded, np.ndarray):
        splits = _held_out(_as_uint8(loaded, path.name), test_fraction, seed)
    else:
        missing = {"train", "test"} - set(loaded.files)
        if missing:
            raise ValueError(f"{path} must hold the arrays 'train' and 'test', it has {', '.join(loaded.files)}")
        splits = {split: _as_uint8(loaded[split], f"{path.name}[{split}]") for split in ("train", "test")}
    shape = _image_shape(splits["train"], path.name)
    return write(out, _rows(splits), name=path.stem, image_shape=shape, likelihood=likelihood, shard_rows=shard_rows)


def from_images(folder: str | Path, out: str | Path, *, likelihood: str = "bernoulli", test_fraction: float = 0.1,
                shard_rows: int = SHARD_ROWS, seed: int = 0) -> Path:
    """Shards of a folder of images (PNG, JPEG, ... of one size), read as 8-bit grey levels in name
    order, split by a permutation from `seed`, test_fraction held out."""
    from PIL import Image  # Pillow, which matplotlib (the experiments extra) brings

    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".gif",
                                                                       ".tif", ".tiff", ".pgm"))
    if not files:
        raise ValueError(f"{folder} holds no images (.png, .jpg, .bmp, .gif, .tif, .pgm)")
    images = []
    for file in files:
        with Image.open(file) as image:
            images.append(np.asarray(image.convert("L"), dtype=np.uint8))
        if images[-1].shape != images[0].shape:
            raise ValueError(f"{file} is {images[-1].shape[1]}x{images[-1].shape[0]}, but {files[0].name} is "
                             f"{images[0].shape[1]}x{images[0].shape[0]}: the images must share one size")
    splits = _held_out(np.stack(images), test_fraction, seed)
    return write(out, _rows(splits), name=folder.name, image_shape=images[0].shape, likelihood=likelihood,
                 shard_rows=shard_rows)


def _rows(splits: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Images [N, H, W] (or rows) as rows [N, H * W]."""
    return {k: v.reshape(v.shape[0], int(np.prod(v.shape[1:]))) for k, v in splits.items()}


def _held_out(images: np.ndarray, test_fraction: float, seed: int) -> dict[str, np.ndarray]:
    """Train and test splits of images by a permutation from `seed`, test_fraction held out (no test
    split when that rounds to no image)."""
    if not 0 <= test_fraction < 1:
        raise ValueError(f"test_fraction must lie in [0, 1), got {test_fraction!r}")
    order = np.random.default_rng(seed).permutation(images.shape[0])
    n_test = int(round(test_fraction * images.shape[0]))
    if n_test == images.shape[0]:
        raise ValueError(f"test_fraction={test_fraction} of {images.shape[0]} images leaves none to train on")
    return {"train": images[order[n_test:]], **({"test": images[order[:n_test]]} if n_test else {})}


def _as_uint8(array: np.ndarray, what: str) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if np.issubdtype(array.dtype, np.floating):
        if array.size and (np.nanmin(array) < 0 or np.nanmax(array) > 1 or np.isnan(array).any()):
            raise ValueError(f"{what}: float images must lie in [0, 1]")
        return np.round(array * 255).astype(np.uint8)
    raise ValueError(f"{what}: images must be uint8, or floats in [0, 1]; got {array.dtype}")


def _image_shape(images: np.ndarray, what: str) -> tuple[int, int]:
    if images.ndim == 3:
        return images.shape[1], images.shape[2]
    side = math.isqrt(images.shape[1]) if images.ndim == 2 else 0
    if images.ndim == 2 and side * side == images.shape[1]:
        return side, side
    raise ValueError(f"{what}: images must be [N, H, W], or rows [N, D] of square images; got {list(images.shape)}")
