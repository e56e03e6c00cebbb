"""The streaming data format (aevb_fast.training.shards): conversion keeps every row, an epoch yields each
row of a rank's shards at most once in an order fixed by (seed, epoch, rank), ranks read disjoint
parts with equal step counts, a split larger than the reader's buffer streams through it, and
damaged or foreign input fails with a message naming it."""

import io
import json
import math
import os
import re
import zipfile

import numpy as np
import pytest
import torch

import aevb_fast
from aevb_fast.training import cli, data, shards

# The registry's likelihood names as messages list them.
NAMES = ", ".join(map(repr, aevb_fast.LIKELIHOODS))


def _rows(n, d=12, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, d), dtype=np.uint8)


def _as_set(batches):
    return {bytes(row) for batch in batches for row in batch.numpy()}


def test_conversion_keeps_every_row(tmp_path):
    train, test = _rows(95), _rows(10, seed=1)
    index = shards.write(
        tmp_path, {"train": train, "test": test}, name="toy", image_shape=(3, 4), likelihood="bernoulli", shard_rows=20
    )
    described = json.loads(index.read_text())
    assert [f["rows"] for f in described["splits"]["train"]] == [20, 20, 20, 20, 15]
    data_set = shards.Shards(tmp_path)
    assert (data_set.name, data_set.dim, data_set.image_shape, data_set.splits) == (
        "toy",
        12,
        (3, 4),
        ("train", "test"),
    )
    split = data_set.split("train")
    # batch 5 divides 95: one epoch is every row once.
    batches = list(split.batches(5, seed=3, epoch=0))
    assert len(batches) == split.steps_per_epoch(5, 3, 0) == 19 and all(b.dtype == torch.uint8 for b in batches)
    assert sorted(_as_set(batches)) == sorted(bytes(r) for r in train)


def test_order_is_fixed_by_seed_and_epoch_and_streams_through_a_small_buffer(tmp_path):
    shards.write(tmp_path, {"train": _rows(200)}, name="toy", image_shape=(3, 4), likelihood="bernoulli", shard_rows=30)
    split = shards.Shards(tmp_path).split("train", buffer_rows=16)  # smaller than a shard and than the split
    first = torch.cat(list(split.batches(8, seed=1, epoch=0)))
    assert torch.equal(first, torch.cat(list(split.batches(8, seed=1, epoch=0))))
    assert not torch.equal(first, torch.cat(list(split.batches(8, seed=1, epoch=1))))
    assert not torch.equal(first, torch.cat(list(split.batches(8, seed=2, epoch=0))))
    assert first.shape == (200, 12) and len(_as_set([first])) == len({bytes(r) for r in _rows(200)})
    # Resuming at step 7 yields the rest of the same epoch.
    assert torch.equal(torch.cat(list(split.batches(8, seed=1, epoch=0, start=7))), first[56:])


def test_ranks_read_disjoint_parts_with_equal_steps(tmp_path):
    shards.write(
        tmp_path, {"train": _rows(230)}, name="toy", image_shape=(3, 4), likelihood="bernoulli", shard_rows=40
    )  # 6 shards: 40, 40, 40, 40, 40, 30
    data_set = shards.Shards(tmp_path)
    parts = [list(data_set.split("train", rank=r, world_size=2).batches(10, seed=5, epoch=2)) for r in (0, 1)]
    assert len(parts[0]) == len(parts[1]) == data_set.split("train", 1, 2).steps_per_epoch(10, 5, 2) == 11
    assert not _as_set(parts[0]) & _as_set(parts[1])
    with pytest.raises(ValueError, match=r"rank must lie in \[0, world_size\), got rank=2, world_size=2"):
        data_set.split("train", rank=2, world_size=2)
    with pytest.raises(ValueError, match=r"has 6 shards, fewer than the 8 ranks: write it with smaller shards"):
        data_set.split("train", rank=0, world_size=8)


def test_convert_command(tmp_path, capsys):
    assert (
        cli.main(["convert", "--dataset", "mnist5k", "--out", str(tmp_path / "mnist5k"), "--shard-rows", "1500"]) == 0
    )
    assert "train 4,000 rows, test 1,000 rows; D = 784" in capsys.readouterr().out
    data_set, embedded = shards.Shards(tmp_path / "mnist5k"), data.load("mnist5k")
    assert (data_set.likelihood, data_set.image_shape) == ("bernoulli", (28, 28))
    test = torch.cat(list(data_set.split("test").batches(1000)))
    assert sorted(_as_set([test])) == sorted(bytes(r) for r in embedded.test.numpy())

    images = (np.random.default_rng(0).random((30, 5, 4)) * 255).astype(np.uint8)
    np.savez(tmp_path / "faces.npz", train=images[:25], test=images[25:].astype(np.float32) / 255)
    assert (
        cli.main(
            [
                "convert",
                "--array",
                str(tmp_path / "faces.npz"),
                "--likelihood",
                "gaussian",
                "--out",
                str(tmp_path / "faces"),
            ]
        )
        == 0
    )
    faces = shards.Shards(tmp_path / "faces")
    assert (faces.image_shape, faces.likelihood, faces.split("test").rows) == ((5, 4), "gaussian", 5)


def test_convert_a_folder_of_images(tmp_path):
    from PIL import Image

    folder = tmp_path / "pictures"
    folder.mkdir()
    pixels = (np.random.default_rng(1).random((10, 6, 7)) * 255).astype(np.uint8)
    for i, image in enumerate(pixels):
        Image.fromarray(image).save(folder / f"{i:02d}.png")
    shards.from_images(folder, tmp_path / "out", test_fraction=0.2)
    data_set = shards.Shards(tmp_path / "out")
    assert (data_set.image_shape, data_set.split("train").rows, data_set.split("test").rows) == ((6, 7), 8, 2)
    rows = torch.cat([*data_set.split("train").batches(8), *data_set.split("test").batches(2)])
    assert sorted(_as_set([rows])) == sorted(bytes(r) for r in pixels.reshape(10, -1))
    with pytest.raises(
        ValueError,
        match=r"test_fraction must lie strictly between 0 and 1 \(training evaluates its "
        r"test bound on the test split\), got 0.0",
    ):
        shards.from_images(folder, tmp_path / "all", test_fraction=0.0)
    Image.fromarray(pixels[0][:, :5]).save(folder / "odd.png")
    with pytest.raises(ValueError, match=r"odd.png is 5x6, but 00.png is 7x6: the images must share one size"):
        shards.from_images(folder, tmp_path / "again")


def test_bad_input_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"index.json is missing: .* is not a sharded data set"):
        shards.Shards(tmp_path)
    (tmp_path / "index.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"index.json cannot be read"):
        shards.Shards(tmp_path)
    (tmp_path / "index.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match=r"is not an index of format 'aevb-fast-shards' version 1"):
        shards.Shards(tmp_path)
    out = tmp_path / "set"
    shards.write(out, {"train": _rows(10)}, name="toy", image_shape=(3, 4), likelihood="bernoulli", shard_rows=5)
    with pytest.raises(ValueError, match=r"already holds a sharded data set"):
        shards.write(out, {"train": _rows(10)}, name="toy", image_shape=(3, 4), likelihood="bernoulli")
    np.save(out / "train-00001.npy", _rows(4))
    with pytest.raises(ValueError, match=r"train-00001.npy holds uint8 \[4, 12\]; the index names uint8 \[5, 12\]"):
        list(shards.Shards(out).split("train").batches(5))
    with pytest.raises(ValueError, match=r"split 'train' must be uint8 \[N, D\], got float64"):
        shards.write(tmp_path / "f", {"train": np.zeros((3, 4))}, name="x", image_shape=(2, 2), likelihood="bernoulli")
    np.save(tmp_path / "bad.npy", np.full((4, 9), 2.0))
    with pytest.raises(ValueError, match=r"bad.npy: float images must lie in \[0, 1\]"):
        shards.from_array(tmp_path / "bad.npy", tmp_path / "g")
    np.save(tmp_path / "rows.npy", np.zeros((4, 10), np.uint8))
    with pytest.raises(ValueError, match=r"rows.npy: images must be \[N, H, W\], or rows \[N, D\] of square images"):
        shards.from_array(tmp_path / "rows.npy", tmp_path / "h")


def _convert_fails(capsys, *arguments: str) -> str:
    """`aevb-fast convert ARGUMENTS` exits with status 2 and one line naming the problem: that line."""
    with pytest.raises(SystemExit) as exit_:
        cli.main(["convert", *arguments])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith("aevb-fast convert: error: ") and err.count("\n") == 1
    assert all(c.isprintable() for c in err[:-1]), "the message holds a control character"
    return err


def _index(directory):
    """A small valid data set in `directory`: its index as a dict."""
    shards.write(
        directory,
        {"train": _rows(10), "test": _rows(5, seed=1)},
        name="toy",
        image_shape=(3, 4),
        likelihood="bernoulli",
        shard_rows=5,
    )
    return json.loads((directory / "index.json").read_text())


def _first(index):
    return index["splits"]["train"][0]


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda i: i.pop("dim"), r"lacks the field 'dim'"),
        (lambda i: i.update(dim="12"), r"'dim' must be a positive int, got '12'"),
        (lambda i: i.update(dim=0), r"'dim' must be a positive int, got 0"),
        (lambda i: i.update(name=None), r"'name' must be a string, got None"),
        (lambda i: i.update(image_shape=[12]), r"'image_shape' must be two positive ints, got \[12\]"),
        (lambda i: i.update(image_shape=[3, "4"]), r"'image_shape' must be two positive ints, got \[3, '4'\]"),
        (lambda i: i.update(image_shape=[3, 5]), r"'image_shape' \[3, 5\] holds 15 pixels, but 'dim' is 12"),
        (
            lambda i: i.update(likelihood="poisson"),
            rf"'likelihood' must be one of {NAMES}, got 'poisson'",
        ),
        (lambda i: i.update(splits=[]), r"'splits' must map split names to non-empty lists of shards, got \[\]"),
        (lambda i: i["splits"].update(test=[]), r"splits\['test'\] must be a non-empty list of shards, got \[\]"),
        (
            lambda i: _first(i).pop("rows"),
            r"splits\['train'\]\[0\] must be \{'file': a relative path, 'rows': a positive "
            r"int\}, got \{'file': 'train-00000.npy'\}",
        ),
        (lambda i: _first(i).update(rows=0), r"splits\['train'\]\[0\] must be \{'file': a relative path, 'rows'"),
        (lambda i: _first(i).update(file=7), r"splits\['train'\]\[0\] must be \{'file': a relative path, 'rows'"),
        (
            lambda i: _first(i).update(file="/etc/passwd"),
            r"splits\['train'\]\[0\]\['file'\] must be a relative path inside the directory, got '/etc/passwd'",
        ),
        (
            lambda i: _first(i).update(file="../x.npy"),
            r"splits\['train'\]\[0\]\['file'\] must be a relative path inside the directory, got '../x.npy'",
        ),
        (
            lambda i: _first(i).update(file="a/../../x.npy"),
            r"splits\['train'\]\[0\]\['file'\] must be a relative path inside the directory, got 'a/../../x.npy'",
        ),
        (
            lambda i: _first(i).update(file=""),
            r"splits\['train'\]\[0\]\['file'\] must be a relative path inside the directory, got ''",
        ),
        (
            lambda i: i["splits"]["test"].append(_first(i)),
            r"splits\['test'\]\[1\]\['file'\] names 'train-00000.npy', "
            r"which splits\['train'\]\[0\] names too",
        ),
    ],
    ids=lambda value: None if callable(value) else re.sub(r"\W+", "-", value)[:40],
)
def test_a_damaged_index_is_named_when_opened(tmp_path, damage, message):
    index = _index(tmp_path)
    damage(index)
    (tmp_path / "index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match=r"index.json: " + message):
        shards.Shards(tmp_path)


def test_an_unreadable_index_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr(shards, "INDEX_LIMIT", 1 << 20)
    (tmp_path / "index.json").write_bytes(b" " * (1 << 20) + b"{}")
    with pytest.raises(ValueError, match=r"index.json is larger than 1 MiB: not an index aevb-fast wrote"):
        shards.Shards(tmp_path)
    (tmp_path / "index.json").write_bytes(b"\x80\x81 garbage")
    with pytest.raises(ValueError, match=r"index.json cannot be read \(UnicodeDecodeError: "):
        shards.Shards(tmp_path)
    (tmp_path / "index.json").write_text("[" * 100_000)
    with pytest.raises(ValueError, match=r"index.json cannot be read \(RecursionError: "):
        shards.Shards(tmp_path)
    (tmp_path / "index.json").unlink()
    (tmp_path / "index.json").mkdir()
    with pytest.raises(ValueError, match=r"index.json is not a regular file \(it is a directory\)"):
        shards.Shards(tmp_path)


def test_write_refuses_an_inconsistent_description(tmp_path):
    with pytest.raises(ValueError, match=r"cannot write .*: 'image_shape' \[3, 5\] holds 15 pixels, but 'dim' is 12"):
        shards.write(tmp_path / "a", {"train": _rows(10)}, name="toy", image_shape=(3, 5), likelihood="bernoulli")
    with pytest.raises(ValueError, match=rf"'likelihood' must be one of {NAMES}, got 'poisson'"):
        shards.write(tmp_path / "b", {"train": _rows(10)}, name="toy", image_shape=(3, 4), likelihood="poisson")
    with pytest.raises(ValueError, match=r"split 'test' has no rows"):
        shards.write(
            tmp_path / "c",
            {"train": _rows(10), "test": _rows(0)},
            name="toy",
            image_shape=(3, 4),
            likelihood="bernoulli",
        )
    assert not any(tmp_path.iterdir())  # refused before anything was written
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match=r"cannot write shards into .*file \(File exists\)"):
        shards.write(tmp_path / "file", {"train": _rows(10)}, name="toy", image_shape=(3, 4), likelihood="bernoulli")


def test_a_damaged_shard_is_named(tmp_path):
    _index(tmp_path)
    shard = tmp_path / "train-00001.npy"
    data_set = shards.Shards(tmp_path)
    shard.write_bytes(b"")
    with pytest.raises(ValueError, match=r"train-00001.npy is empty \(0 bytes\)"):
        list(data_set.split("train").batches(5))
    for claimed, message in (
        ((10**9, 12), r"holds uint8 \[1000000000, 12\]; the index names uint8 \[5, 12\]"),
        (
            (5, 12),
            r"is not a readable shard \(ValueError: mmap length is greater than file "
            r"size\)",
        ),
    ):
        with shard.open("wb") as stream:  # a header claiming more rows than the 2 there are
            np.lib.format.write_array_header_1_0(stream, {"descr": "|u1", "fortran_order": False, "shape": claimed})
            stream.write(_rows(2).tobytes())
        with pytest.raises(ValueError, match=r"train-00001.npy " + message):
            list(data_set.split("train").batches(5))
    shard.write_bytes(b"\x93NUMPY\x02\x00" + (2**32 - 1).to_bytes(4, "little") + b"{}")  # a 4 GiB header
    with pytest.raises(ValueError, match=r"train-00001.npy is not an .npy array \(EOF: reading array header"):
        list(data_set.split("train").batches(5))
    np.savez(shard.with_suffix(".npz"), x=_rows(5))
    shard.with_suffix(".npz").replace(shard)
    with pytest.raises(ValueError, match=r"train-00001.npy is not an .npy array \(the magic string is not correct"):
        list(data_set.split("train").batches(5))
    shard.unlink()
    with pytest.raises(ValueError, match=r"train-00001.npy is missing: .*index.json names it"):
        list(data_set.split("train").batches(5))


def test_shards_fingerprint(tmp_path, monkeypatch):
    _index(tmp_path / "set")
    first = shards.Shards(tmp_path / "set").fingerprint()
    assert re.fullmatch(r"[0-9a-f]{16}", first)
    (tmp_path / "link").symlink_to(tmp_path / "set")
    monkeypatch.chdir(tmp_path)
    spellings = ("set", "link", "./link/", tmp_path / "set", "again")
    _index(tmp_path / "again")  # the same rows again
    assert {shards.Shards(spelling).fingerprint() for spelling in spellings} == {first}
    index = json.loads((tmp_path / "again" / "index.json").read_text())
    (tmp_path / "again" / "index.json").write_text(json.dumps({**index, "name": "other"}))
    assert shards.Shards("again").fingerprint() != first
    np.save(tmp_path / "set" / "test-00000.npy", _rows(5, seed=2))  # the same size, other rows
    assert shards.Shards("set").fingerprint() != first
    (tmp_path / "set" / "train-00001.npy").unlink()
    with pytest.raises(ValueError, match=r"train-00001.npy is missing: .*index.json names it"):
        shards.Shards("set").fingerprint()
    # A shard's middle is not read: a fingerprint costs at most 128 KiB a shard.
    shards.write(
        tmp_path / "large",
        {"train": _rows(20_000)},
        name="toy",
        image_shape=(3, 4),
        likelihood="bernoulli",
        shard_rows=20_000,
    )
    large = shards.Shards("large").fingerprint()
    shard = tmp_path / "large" / "train-00000.npy"
    content = bytearray(shard.read_bytes())
    content[120_000] ^= 0xFF
    shard.write_bytes(content)
    assert shards.Shards("large").fingerprint() == large


def _npy_claiming(path, shape, payload: bytes = bytes(784)) -> None:
    """An .npy file whose header declares uint8 `shape`, followed by `payload`."""
    with open(path, "wb") as stream:
        np.lib.format.write_array_header_1_0(stream, {"descr": "|u1", "fortran_order": False, "shape": shape})
        stream.write(payload)


def _npz(path, **members: bytes) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)


def _npy_bytes(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "name, make, message",
    [
        (
            "a.npy",
            lambda p: np.save(p, np.float32(0.5)),
            r"a.npy: images must be \[N, H, W\], or rows \[N, D\] of square images; got \[\]",
        ),
        ("a.npy", lambda p: np.save(p, np.zeros(16, np.uint8)), r"a.npy: images must be \[N, H, W\].*; got \[16\]"),
        (
            "a.npy",
            lambda p: np.save(p, np.zeros((2, 2, 2, 2), np.uint8)),
            r"a.npy: images must be \[N, H, W\].*; got \[2, 2, 2, 2\]",
        ),
        ("a.npy", lambda p: p.write_bytes(b""), r"a.npy is empty \(0 bytes\)"),
        (
            "a.npy",
            lambda p: p.write_bytes(b"just some text, not an array"),
            r"a.npy is not an .npy array \(the magic string is not correct",
        ),
        (
            "a.npy",
            lambda p: _npy_claiming(p, (10**12, 784)),
            r"a.npy's header declares uint8 \[1000000000000, 784\] \(784,000,000,000,000 bytes\), "
            r"but 784 bytes follow it",
        ),
        (
            "a.npy",
            lambda p: np.save(p, np.array([[{}]], dtype=object)),
            r"a.npy holds Python objects \(dtype object\), not images",
        ),
        (
            "a.npy",
            lambda p: np.save(p, np.zeros((4, 9), np.int64)),
            r"a.npy: images must be uint8, or floats in \[0, 1\]; got int64",
        ),
        ("a.npy", lambda p: np.save(p, np.zeros((0, 9), np.uint8)), r"a.npy holds no images \(shape \[0, 9\]\)"),
        ("a.npy", lambda p: np.save(p, np.full((4, 9), np.nan)), r"a.npy: float images must lie in \[0, 1\]"),
        (
            "a.npz",
            lambda p: _npz(p, **{"train.npy": _npy_bytes(_rows(4, 9))}),
            r"a.npz must hold the arrays 'train' and 'test' \(members train.npy and test.npy\), "
            r"it holds \['train.npy'\]",
        ),
        (
            "a.npz",
            lambda p: _npz(p, **{"train.npy": _npy_bytes(_rows(4, 9)), "test.npy": b"\x93NUMPY\x01\x00garbage"}),
            r"a.npz\[test\] is not an .npy array \(",
        ),
        (
            "a.npz",
            lambda p: _npz(p, **{"train.npy": _npy_bytes(_rows(4, 9)), "test.npy": _npy_bytes(_rows(0, 9))}),
            r"a.npz\[test\] holds no images \(shape \[0, 9\]\): the train and test splits both need images \(training "
            r"evaluates its test bound on the test split\)",
        ),
        (
            "a.npz",
            lambda p: _npz(p, **{"train.npy": _npy_bytes(_rows(4, 9)), "test.npy": _npy_bytes(_rows(4, 16))}),
            r"a.npz: the train and test images differ in size \(3 x 3 and 4 x 4\)",
        ),
        (
            "a.npz",
            lambda p: p.write_bytes(b"PK\x03\x04 and then nothing of a zip file"),
            r"a.npz is not a readable .npz file \(BadZipFile: ",
        ),
    ],
    ids=lambda value: None if callable(value) else re.sub(r"\W+", "-", value)[:40],
)
def test_a_damaged_array_is_named(tmp_path, name, make, message):
    make(tmp_path / name)
    with pytest.raises(ValueError, match=message):
        shards.from_array(tmp_path / name, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_an_npz_member_claiming_a_huge_shape_is_refused_at_its_header(tmp_path):
    with zipfile.ZipFile(tmp_path / "a.npz", "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("train.npy", "w") as member:
            np.lib.format.write_array_header_1_0(
                member, {"descr": "<f4", "fortran_order": False, "shape": (10**12, 28, 28)}
            )
            member.write(bytes(4 * 784))
        archive.writestr("test.npy", _npy_bytes(_rows(4, 784)))
    with pytest.raises(
        ValueError,
        match=r"a.npz\[train\]'s header declares float32 \[1000000000000, 28, 28\] "
        r"\(3,136,000,000,000,000 bytes\), but 3,136 bytes follow it",
    ):
        shards.from_array(tmp_path / "a.npz", tmp_path / "out")


def _picture_folder(path, count=10, size=(6, 7)):
    from PIL import Image

    path.mkdir()
    for i, image in enumerate((np.random.default_rng(1).random((count, *size)) * 255).astype(np.uint8)):
        Image.fromarray(image).save(path / f"{i:02d}.png")
    return path


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda p, png: p.write_text("not an image at all"),
            r"bad.png is not a readable image \(UnidentifiedImageError: ",
        ),
        (
            lambda p, png: p.write_bytes(png[: len(png) // 2]),
            r"bad.png is not a readable image \(OSError: image file is "
            r"truncated",
        ),
        (lambda p, png: p.write_bytes(b""), r"bad.png is empty \(0 bytes\)"),
        (lambda p, png: p.mkdir(), r"bad.png is not a regular file \(it is a directory\)"),
    ],
    ids=["text", "truncated", "empty", "directory"],
)
def test_a_damaged_image_is_named(tmp_path, make, message):
    folder = _picture_folder(tmp_path / "pictures")
    make(folder / "bad.png", (folder / "00.png").read_bytes())
    with pytest.raises(ValueError, match=message):
        shards.from_images(folder, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_decompression_bomb_is_refused(tmp_path, monkeypatch):
    from PIL import Image

    # Pillow's limit, lowered here: above it Pillow warns (refused too), above twice it Pillow raises.
    folder = _picture_folder(tmp_path / "pictures", size=(40, 30))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(
        ValueError,
        match=r"00.png is not a readable image \(DecompressionBombWarning: Image size "
        r"\(1200 pixels\) exceeds limit of 1000 pixels",
    ):
        shards.from_images(folder, tmp_path / "out")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)
    with pytest.raises(
        ValueError,
        match=r"00.png is not a readable image \(DecompressionBombError: Image size "
        r"\(1200 pixels\) exceeds limit of 1000 pixels",
    ):
        shards.from_images(folder, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_missing_folder_of_images_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"nowhere is not a readable folder of images \(No such file or directory\)"):
        shards.from_images(tmp_path / "nowhere", tmp_path / "out")
    (tmp_path / "file").write_text("a file")
    with pytest.raises(ValueError, match=r"file is not a readable folder of images \(Not a directory\)"):
        shards.from_images(tmp_path / "file", tmp_path / "out")


def test_a_conversion_needs_a_test_split(tmp_path):
    folder = _picture_folder(tmp_path / "one", count=1)
    with pytest.raises(
        ValueError,
        match=r"test_fraction=0.1 of 1 images leaves no test image: training evaluates its "
        r"test bound on the test split",
    ):
        shards.from_images(folder, tmp_path / "out")
    for fraction in (1.0, -0.5, math.nan):
        with pytest.raises(ValueError, match=r"test_fraction must lie strictly between 0 and 1"):
            shards.from_array(tmp_path / "never-read.npy", tmp_path / "out", test_fraction=fraction)
    with pytest.raises(ValueError, match=r"shard_rows must be a positive int, got 0"):
        shards.from_images(tmp_path / "never-read", tmp_path / "out", shard_rows=0)


def test_bad_input_to_the_convert_command_is_one_line(tmp_path, capsys):
    folder = _picture_folder(tmp_path / "pictures")
    (folder / "evil\x1b[2J\n.png").write_text("text, named so as to clear the terminal and split the message")
    err = _convert_fails(capsys, "--images", str(folder), "--out", str(tmp_path / "out"))
    assert re.search(r"evil\\x1b\[2J\\n.png is not a readable image \(UnidentifiedImageError: ", err)
    (folder / "evil\x1b[2J\n.png").unlink()
    assert "test_fraction must lie strictly between 0 and 1" in _convert_fails(
        capsys, "--images", str(folder), "--test-fraction", "0", "--out", str(tmp_path / "out")
    )
    assert "shard_rows must be a positive int, got 0" in _convert_fails(
        capsys, "--images", str(folder), "--shard-rows", "0", "--out", str(tmp_path / "out")
    )
    assert re.search(
        r"nowhere is not a readable folder of images \(No such file or directory\)",
        _convert_fails(capsys, "--images", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")),
    )
    _npy_claiming(tmp_path / "huge.npy", (10**12, 784))
    assert "huge.npy's header declares uint8 [1000000000000, 784]" in _convert_fails(
        capsys, "--array", str(tmp_path / "huge.npy"), "--out", str(tmp_path / "out")
    )
    (tmp_path / "mnist").mkdir()
    os.mkfifo(tmp_path / "mnist" / "train-images-idx3-ubyte.gz")
    assert "train-images-idx3-ubyte.gz is not a regular file (it is a FIFO)" in _convert_fails(
        capsys, "--dataset", "mnist", "--data-path", str(tmp_path / "mnist"), "--out", str(tmp_path / "out")
    )
    assert not (tmp_path / "out").exists()


def test_fifos_are_refused_not_read(tmp_path):
    # Opening a FIFO for reading blocks until a writer comes: each must be refused before it is opened.
    folder = _picture_folder(tmp_path / "pictures")
    os.mkfifo(folder / "pipe.png")
    with pytest.raises(ValueError, match=r"pipe.png is not a regular file \(it is a FIFO\)"):
        shards.from_images(folder, tmp_path / "out")
    os.mkfifo(tmp_path / "pipe.npy")
    with pytest.raises(ValueError, match=r"pipe.npy is not a regular file \(it is a FIFO\)"):
        shards.from_array(tmp_path / "pipe.npy", tmp_path / "out")
    _index(tmp_path / "set")
    data_set = shards.Shards(tmp_path / "set")
    (tmp_path / "set" / "train-00001.npy").unlink()
    os.mkfifo(tmp_path / "set" / "train-00001.npy")
    with pytest.raises(ValueError, match=r"train-00001.npy is not a regular file \(it is a FIFO\)"):
        list(data_set.split("train").batches(5))
    (tmp_path / "set" / "index.json").unlink()
    os.mkfifo(tmp_path / "set" / "index.json")
    with pytest.raises(ValueError, match=r"index.json is not a regular file \(it is a FIFO\)"):
        shards.Shards(tmp_path / "set")
