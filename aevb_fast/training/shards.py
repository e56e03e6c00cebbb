"""A streaming data set: a directory of uint8 shards that are read memory-mapped, so a data set
larger than RAM trains without ever being loaded whole.

    aevb-fast convert --dataset mnist --data-path DIR --out shards/mnist     # or --images, --array
    split = Shards("shards/mnist").split("train", rank=0, world_size=1)
    for batch in split.batches(batch_size=100, seed=0, epoch=0):            # uint8 [100, 784]
        ...

Layout: DIR/index.json names the format and version, the data set's name, row width D, image
shape (H, W with H x W = D) and decoder likelihood, and per split a non-empty list of its shard
files (plain paths inside DIR, each named once) and their row counts; each shard is a NumPy .npy
file of uint8 [rows, D]. The whole index is checked when it is opened, each shard when it is read.

Order: each epoch deals the split's shards out in an order drawn from (seed, epoch); rank r of
world_size takes every world_size-th of them, so the ranks read disjoint parts. A rank reads its
shards in turn into a buffer of buffer_rows rows, shuffles the buffer and yields it in batches: the
order is fixed by (seed, epoch, rank), whatever the machine. Every rank yields the same number of
batches (steps_per_epoch: the least any rank can fill; rows beyond it are left for that epoch), as
data-parallel training needs.
"""

import hashlib
import io
import json
import math
import reprlib
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from .. import LIKELIHOODS
from ._checks import check_count, is_count, reading
from .data import check_regular_file, fingerprint_file

FORMAT, VERSION = "aevb-fast-shards", 1
SHARD_ROWS = 10_000
BUFFER_ROWS = 20_000
INDEX_LIMIT = 64 << 20  # bytes of index.json read at most: some 10**6 shards
INDEX_FIELDS = ("name", "dim", "image_shape", "likelihood", "splits")
NPY_HEAD = 6 + 2 + 4 + 10_000  # an .npy file's magic, version, header length and (NumPy's limit) header
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".pgm")


def write(
    out: str | Path,
    splits: dict[str, np.ndarray | torch.Tensor],
    *,
    name: str,
    image_shape: tuple[int, int],
    likelihood: str,
    shard_rows: int = SHARD_ROWS,
) -> Path:
    """Writes splits ({"train": uint8 [N, D], "test": ...}, none empty) as shards of shard_rows rows
    into `out` (created; it must not hold shards already) and returns the index file's path.
    image_shape must hold D pixels and likelihood be one of LIKELIHOODS; all is checked before
    anything is written. The index is written last, so a directory with an index holds every shard
    it names."""
    check_count("shard_rows", shard_rows)
    out = Path(out)
    if (out / "index.json").exists():
        raise ValueError(f"{out} already holds a sharded data set (index.json); choose another directory")
    arrays = {split: np.asarray(rows) for split, rows in splits.items()}
    widths = {a.shape[1] if a.ndim == 2 else None for a in arrays.values()}
    for split, rows in arrays.items():
        if rows.dtype != np.uint8 or rows.ndim != 2:
            raise ValueError(f"split {split!r} must be uint8 [N, D], got {rows.dtype} {list(rows.shape)}")
        if rows.shape[0] == 0:
            raise ValueError(f"split {split!r} has no rows")
    if len(widths) != 1:
        raise ValueError(f"every split must have the same row width D, got {sorted(map(str, widths))}")
    index = {
        "format": FORMAT,
        "version": VERSION,
        "name": name,
        "dim": widths.pop(),
        "image_shape": list(image_shape),
        "likelihood": likelihood,
        "splits": {},
    }
    problem = _description_problem(index)
    if problem:
        raise ValueError(f"cannot write {out}: {problem}")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"cannot write shards into {out} ({error.strerror})") from None
    for split, rows in arrays.items():
        files = []
        for number, start in enumerate(range(0, rows.shape[0], shard_rows)):
            file = f"{split}-{number:05d}.npy"
            np.save(out / file, np.ascontiguousarray(rows[start : start + shard_rows]))
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
        path = check_regular_file(
            self.directory / "index.json",
            f"{self.directory} is not a sharded data set (write one with aevb-fast convert)",
        )
        try:
            with path.open("rb") as stream:
                self._index_bytes = stream.read(INDEX_LIMIT + 1)
            if len(self._index_bytes) > INDEX_LIMIT:
                raise ValueError(f"{path} is larger than {INDEX_LIMIT >> 20} MiB: not an index aevb-fast wrote")
            index = json.loads(self._index_bytes)
        except OSError as error:
            raise ValueError(f"{path} cannot be read ({error.strerror})") from None
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
            raise ValueError(f"{path} cannot be read ({type(error).__name__}: {error})") from None
        if not isinstance(index, dict) or index.get("format") != FORMAT or index.get("version") != VERSION:
            raise ValueError(f"{path} is not an index of format {FORMAT!r} version {VERSION}")
        problem = _index_problem(index)
        if problem:
            raise ValueError(f"{path}: {problem}")
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
                buffer[filled : filled + take] = shard[at : at + take]
                filled, at = filled + take, at + take
                if filled == size:
                    yield buffer.copy()
                    filled = 0
        if filled:
            yield buffer[:filled].copy()

    def shard(self, file: str, rows: int) -> np.ndarray:
        """One shard, memory-mapped once its header (read from its first NPY_HEAD bytes alone) is
        checked against the index; a header that claims more than the file holds fails to map."""
        path = self._shard_path(file)
        with reading(path, "shard"), path.open("rb") as stream:
            head = stream.read(NPY_HEAD)
        shape, fortran_order, dtype, offset = _npy_header(head, path)
        if dtype != np.uint8 or shape != (rows, self.dim) or fortran_order:
            raise ValueError(
                f"{path} holds {dtype} {list(shape)}{' in Fortran order' if fortran_order else ''}; "
                f"the index names uint8 {[rows, self.dim]}"
            )
        with reading(path, "shard"):
            return np.memmap(path, np.uint8, "r", offset, shape)

    def fingerprint(self) -> str:
        """16 hex digits of SHA-256 over index.json's bytes (as opened), then each shard's name (as
        the index gives it), size and first and last 64 KiB (data.fingerprint_file): at most 128 KiB
        read a shard. The same however the directory is spelled; other rows at either end of a shard
        change it."""
        digest = hashlib.sha256(len(self._index_bytes).to_bytes(8, "big") + self._index_bytes)
        for entries in self._splits.values():
            for entry in entries:
                fingerprint_file(digest, self._shard_path(entry["file"]), entry["file"])
        return digest.hexdigest()[:16]

    def _shard_path(self, file: str) -> Path:
        return check_regular_file(self.directory / file, f"{self.directory / 'index.json'} names it")


def _index_problem(index: dict) -> str | None:
    """What is wrong with an index (see the module's docstring for the layout), or None."""
    missing = [field for field in INDEX_FIELDS if field not in index]
    if missing:
        return f"lacks the field {', '.join(map(repr, missing))}"
    return _description_problem(index) or _splits_problem(index["splits"])


def _description_problem(index: dict) -> str | None:
    """What is wrong with an index's name, dim, image_shape and likelihood, or None."""
    name, dim, shape, likelihood = (index[field] for field in ("name", "dim", "image_shape", "likelihood"))
    if not isinstance(name, str):
        return f"'name' must be a string, got {reprlib.repr(name)}"
    if not is_count(dim):
        return f"'dim' must be a positive int, got {reprlib.repr(dim)}"
    if not isinstance(shape, list) or len(shape) != 2 or not all(map(is_count, shape)):
        return f"'image_shape' must be two positive ints, got {reprlib.repr(shape)}"
    if shape[0] * shape[1] != dim:
        return f"'image_shape' {shape} holds {shape[0] * shape[1]} pixels, but 'dim' is {dim}"
    if likelihood not in LIKELIHOODS:
        return f"'likelihood' must be one of {', '.join(map(repr, LIKELIHOODS))}, got {reprlib.repr(likelihood)}"
    return None


def _splits_problem(splits) -> str | None:
    """What is wrong with an index's splits, or None: each a non-empty list of {"file", "rows"}, the
    files plain relative paths that stay inside the directory, no file named twice."""
    if not isinstance(splits, dict) or not splits:
        return f"'splits' must map split names to non-empty lists of shards, got {reprlib.repr(splits)}"
    named = {}
    for split, entries in splits.items():
        if not isinstance(entries, list) or not entries:
            return f"splits[{split!r}] must be a non-empty list of shards, got {reprlib.repr(entries)}"
        for number, entry in enumerate(entries):
            where = f"splits[{split!r}][{number}]"
            if not (isinstance(entry, dict) and isinstance(entry.get("file"), str) and is_count(entry.get("rows"))):
                return f"{where} must be {{'file': a relative path, 'rows': a positive int}}, got {reprlib.repr(entry)}"
            file = PurePosixPath(entry["file"])
            if file.is_absolute() or ".." in file.parts or not file.parts:
                return (
                    f"{where}['file'] must be a relative path inside the directory, got {reprlib.repr(entry['file'])}"
                )
            if file in named:
                return f"{where}['file'] names {str(file)!r}, which {named[file]} names too"
            named[file] = where
    return None


class ShardedSplit:
    """One split of a sharded data set as seen by one rank (see the module's docstring for the order)."""

    def __init__(self, shards: Shards, name: str, rank: int, world_size: int, buffer_rows: int):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must lie in [0, world_size), got rank={rank}, world_size={world_size}")
        check_count("buffer_rows", buffer_rows)
        self.shards, self.name, self.rank, self.world_size = shards, name, rank, world_size
        self.buffer_rows = buffer_rows
        self.files = shards._splits[name]
        if len(self.files) < world_size:
            raise ValueError(
                f"split {name!r} of {shards.directory} has {len(self.files)} shards, fewer than the "
                f"{world_size} ranks: write it with smaller shards"
            )

    @property
    def rows(self) -> int:
        """Rows in the whole split."""
        return sum(f["rows"] for f in self.files)

    def _dealt(self, seed: int, epoch: int) -> list[list[dict]]:
        order = torch.randperm(len(self.files), generator=torch.Generator().manual_seed(_mix(seed, epoch, -1)))
        shards = [self.files[i] for i in order.tolist()]
        return [shards[r :: self.world_size] for r in range(self.world_size)]

    def steps_per_epoch(self, batch_size: int, seed: int, epoch: int) -> int:
        """Batches every rank yields in this epoch: the least any rank's shards fill."""
        return min(sum(f["rows"] for f in mine) for mine in self._dealt(seed, epoch)) // batch_size

    def batches(self, batch_size: int, seed: int = 0, epoch: int = 0, start: int = 0) -> Iterator[torch.Tensor]:
        """This rank's batches of the epoch, uint8 [batch_size, D], from the start-th on."""
        check_count("batch_size", batch_size)
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
    """Shards of one of aevb_fast.training.data's data sets (a Dataset)."""
    return write(
        out,
        {"train": dataset.train.numpy(), "test": dataset.test.numpy()},
        name=dataset.name,
        image_shape=dataset.image_shape,
        likelihood=dataset.likelihood,
        shard_rows=shard_rows,
    )


def from_array(
    path: str | Path,
    out: str | Path,
    *,
    likelihood: str = "bernoulli",
    test_fraction: float = 0.1,
    shard_rows: int = SHARD_ROWS,
    seed: int = 0,
) -> Path:
    """Shards of an .npy array, or of the arrays "train" and "test" of an .npz file: images
    [N, H, W] (or rows [N, D] of square images), uint8, or floats in [0, 1] (stored as round(255 x)).
    A single array is split by a permutation from `seed`, test_fraction (0 < f < 1) of it held out.
    Every array's header is checked against the bytes that follow it before its data is read, so a
    damaged or hostile file costs no more memory than the data it holds."""
    _check_conversion(test_fraction, shard_rows)
    path = check_regular_file(Path(path), "--array wants an .npy array, or an .npz file of arrays train and test")
    if path.suffix.lower() == ".npz" or zipfile.is_zipfile(path):
        splits = {split: _as_uint8(images, f"{path.name}[{split}]") for split, images in _npz_arrays(path).items()}
    else:
        images = _read_npy(lambda: path.open("rb"), path.stat().st_size, path.name)
        splits = _held_out(_as_uint8(images, path.name), test_fraction, seed)
    shapes = {split: _image_shape(images.shape, path.name) for split, images in splits.items()}
    if len(set(shapes.values())) != 1:
        raise ValueError(
            f"{path.name}: the train and test images differ in size "
            f"({' and '.join(f'{h} x {w}' for h, w in shapes.values())})"
        )
    return write(
        out, _rows(splits), name=path.stem, image_shape=shapes["train"], likelihood=likelihood, shard_rows=shard_rows
    )


def from_images(
    folder: str | Path,
    out: str | Path,
    *,
    likelihood: str = "bernoulli",
    test_fraction: float = 0.1,
    shard_rows: int = SHARD_ROWS,
    seed: int = 0,
) -> Path:
    """Shards of a folder of images (PNG, JPEG, ... of one size), read as 8-bit grey levels in name
    order, split by a permutation from `seed`, test_fraction (0 < f < 1) held out. Every file with an
    image suffix must be a regular file holding an image Pillow decodes within its decompression-bomb
    limit (Image.MAX_IMAGE_PIXELS: above it, Pillow's warning is taken as an error)."""
    _check_conversion(test_fraction, shard_rows)
    folder = Path(folder)
    try:
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    except OSError as error:
        raise ValueError(f"{folder} is not a readable folder of images ({error.strerror})") from None
    if not files:
        raise ValueError(f"{folder} holds no images (.png, .jpg, .bmp, .gif, .tif, .pgm)")
    images = []
    for file in files:
        images.append(_grey_levels(check_regular_file(file, f"it was listed in {folder}")))
        if images[-1].shape != images[0].shape:
            raise ValueError(
                f"{file} is {images[-1].shape[1]}x{images[-1].shape[0]}, but {files[0].name} is "
                f"{images[0].shape[1]}x{images[0].shape[0]}: the images must share one size"
            )
    splits = _held_out(np.stack(images), test_fraction, seed)
    return write(
        out, _rows(splits), name=folder.name, image_shape=images[0].shape, likelihood=likelihood, shard_rows=shard_rows
    )


def _grey_levels(file: Path) -> np.ndarray:
    """One image as 8-bit grey levels [H, W]."""
    from PIL import Image  # Pillow, which matplotlib (the experiments extra) brings

    with reading(file, "image"), warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(file) as image:
            return np.asarray(image.convert("L"), dtype=np.uint8)


def _npz_arrays(path: Path) -> dict[str, np.ndarray]:
    """The arrays "train" and "test" of an .npz file (a zip of .npy files), each header checked
    against the size the zip's directory gives its member (zipfile never inflates more)."""
    with reading(path, ".npz file"):
        archive = zipfile.ZipFile(path)
    with archive:
        members = archive.namelist()
        if not {"train.npy", "test.npy"} <= set(members):
            raise ValueError(
                f"{path.name} must hold the arrays 'train' and 'test' (members train.npy and test.npy), "
                f"it holds {reprlib.repr(members)}"
            )
        return {
            split: _read_npy(
                lambda: archive.open(f"{split}.npy"), archive.getinfo(f"{split}.npy").file_size, f"{path.name}[{split}]"
            )
            for split in ("train", "test")
        }


def _read_npy(open_stream, size: int, what: str) -> np.ndarray:
    """The array of the .npy stream that open_stream() opens, `size` bytes long. Its header, read
    from the first NPY_HEAD bytes alone, must declare images (_check_declared) of exactly the bytes
    that follow it before the data is read: a header claiming more than the stream holds is refused,
    never allocated."""
    with reading(what, ".npy array"), open_stream() as stream:
        head = stream.read(NPY_HEAD)
    shape, _, dtype, offset = _npy_header(head, what)
    _check_declared(shape, dtype, size - offset, what)
    with reading(what, ".npy array"), open_stream() as stream:
        return np.lib.format.read_array(stream, allow_pickle=False)


def _npy_header(head: bytes, what) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """The shape, order (True: Fortran's) and dtype that an .npy file's first bytes declare, and
    where its data start. Only `head` is parsed, so a header length claiming gigabytes reads nothing
    more."""
    stream = io.BytesIO(head)
    try:
        version = np.lib.format.read_magic(stream)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran_order, dtype = read_header(stream)
    except ValueError as error:
        raise ValueError(f"{what} is not an .npy array ({error})") from None
    return shape, fortran_order, dtype, stream.tell()


def _check_declared(shape: tuple[int, ...], dtype: np.dtype, data_bytes: int, what: str) -> None:
    """Refuses an .npy header that does not declare images, or whose array is not the data_bytes
    that follow it."""
    if dtype.hasobject:
        raise ValueError(f"{what} holds Python objects (dtype {dtype}), not images")
    if dtype != np.uint8 and not np.issubdtype(dtype, np.floating):
        raise ValueError(f"{what}: images must be uint8, or floats in [0, 1]; got {dtype}")
    _image_shape(shape, what)
    if 0 in shape:
        raise ValueError(
            f"{what} holds no images (shape {list(shape)}): the train and test splits both need images "
            "(training evaluates its test bound on the test split)"
        )
    declared = math.prod(shape) * dtype.itemsize
    if declared != data_bytes:
        raise ValueError(
            f"{what}'s header declares {dtype} {list(shape)} ({declared:,} bytes), but {data_bytes:,} bytes follow it"
        )


def _check_conversion(test_fraction: float, shard_rows: int) -> None:
    """Refuses a conversion's options before any image is read."""
    check_count("shard_rows", shard_rows)
    if not 0 < test_fraction < 1:
        raise ValueError(
            f"test_fraction must lie strictly between 0 and 1 (training evaluates its test bound on the "
            f"test split), got {test_fraction!r}"
        )


def _rows(splits: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Images [N, H, W] (or rows) as rows [N, H * W]."""
    return {k: v.reshape(v.shape[0], int(np.prod(v.shape[1:]))) for k, v in splits.items()}


def _held_out(images: np.ndarray, test_fraction: float, seed: int) -> dict[str, np.ndarray]:
    """Train and test splits of images by a permutation from `seed`, test_fraction held out: at
    least one image in each."""
    order = np.random.default_rng(seed).permutation(images.shape[0])
    n_test = int(round(test_fraction * images.shape[0]))
    if n_test == 0:
        raise ValueError(
            f"test_fraction={test_fraction} of {images.shape[0]} images leaves no test image: training "
            "evaluates its test bound on the test split"
        )
    if n_test == images.shape[0]:
        raise ValueError(f"test_fraction={test_fraction} of {images.shape[0]} images leaves none to train on")
    return {"train": images[order[n_test:]], "test": images[order[:n_test]]}


def _as_uint8(images: np.ndarray, what: str) -> np.ndarray:
    """uint8 images as they are; float images (the only other kind _check_declared lets through),
    which must lie in [0, 1], as round(255 x)."""
    if images.dtype == np.uint8:
        return images
    if not np.all((images >= 0) & (images <= 1)):  # NaN fails both comparisons
        raise ValueError(f"{what}: float images must lie in [0, 1]")
    return np.round(images * 255).astype(np.uint8)


def _image_shape(shape: tuple[int, ...], what: str) -> tuple[int, int]:
    """(H, W) of images of array shape [N, H, W], or [N, D] with D a square."""
    if len(shape) == 3:
        return shape[1], shape[2]
    side = math.isqrt(shape[1]) if len(shape) == 2 else 0
    if len(shape) == 2 and side * side == shape[1]:
        return side, side
    raise ValueError(f"{what}: images must be [N, H, W], or rows [N, D] of square images; got {list(shape)}")
