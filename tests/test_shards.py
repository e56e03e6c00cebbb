"""The streaming data format (aevb_fast.shards): conversion keeps every row, an epoch yields each
row of a rank's shards at most once in an order fixed by (seed, epoch, rank), ranks read disjoint
parts with equal step counts, a split larger than the reader's buffer streams through it, and
damaged or foreign input fails with a message naming it."""

import json

import numpy as np
import pytest
import torch

from aevb_fast import cli, data, shards


def _rows(n, d=12, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, d), dtype=np.uint8)


def _as_set(batches):
    return {bytes(row) for batch in batches for row in batch.numpy()}


def test_conversion_keeps_every_row(tmp_path):
    train, test = _rows(95), _rows(10, seed=1)
    index = shards.write(tmp_path, {"train": train, "test": test}, name="toy", image_shape=(3, 4),
                         likelihood="bernoulli", shard_rows=20)
    described = json.loads(index.read_text())
    assert [f["rows"] for f in described["splits"]["train"]] == [20, 20, 20, 20, 15]
    data_set = shards.Shards(tmp_path)
    assert (data_set.name, data_set.dim, data_set.image_shape, data_set.splits) == ("toy", 12, (3, 4), ("train", "test"))
    split = data_set.split("train")
    # batch 5 divides 95: one epoch is every row once.
    batches = list(split.batches(5, seed=3, epoch=0))
    assert len(batches) == split.steps_per_epoch(5, 3, 0) == 19 and all(b.dtype == torch.uint8 for b in batches)
    assert sorted(_as_set(batches)) == sorted(bytes(r) for r in train)


def test_order_is_fixed_by_seed_and_epoch_and_streams_through_a_small_buffer(tmp_path):
    shards.write(tmp_path, {"train": _rows(200)}, name="toy", image_shape=(3, 4), likelihood="bernoulli",
                 shard_rows=30)
    split = shards.Shards(tmp_path).split("train", buffer_rows=16)  # smaller than a shard and than the split
    first = torch.cat(list(split.batches(8, seed=1, epoch=0)))
    assert torch.equal(first, torch.cat(list(split.batches(8, seed=1, epoch=0))))
    assert not torch.equal(first, torch.cat(list(split.batches(8, seed=1, epoch=1))))
    assert not torch.equal(first, torch.cat(list(split.batches(8, seed=2, epoch=0))))
    assert first.shape == (200, 12) and len(_as_set([first])) == len({bytes(r) for r in _rows(200)})
    # Resuming at step 7 yields the rest of the same epoch.
    assert torch.equal(torch.cat(list(split.batches(8, seed=1, epoch=0, start=7))), first[56:])


def test_ranks_read_disjoint_parts_with_equal_steps(tmp_path):
    shards.write(tmp_path, {"train": _rows(230)}, name="toy", image_shape=(3, 4), likelihood="bernoulli",
                 shard_rows=40)  # 6 shards: 40, 40, 40, 40, 40, 30
    data_set = shards.Shards(tmp_path)
    parts = [list(data_set.split("train", rank=r, world_size=2).batches(10, seed=5, epoch=2)) for r in (0, 1)]
    assert len(parts[0]) == len(parts[1]) == data_set.split("train", 1, 2).steps_per_epoch(10, 5, 2) == 11
    assert not _as_set(parts[0]) & _as_set(parts[1])
    with pytest.raises(ValueError, match=r"rank must lie in \[0, world_size\), got rank=2, world_size=2"):
        data_set.split("train", rank=2, world_size=2)
    with pytest.raises(ValueError, match=r"has 6 shards, fewer than the 8 ranks: write it with smaller shards"):
        data_set.split("train", rank=0, world_size=8)


def test_convert_command(tmp_path, capsys):
    assert cli.main(["convert", "--dataset", "mnist5k", "--out", str(tmp_path / "mnist5k"), "--shard-rows", "1500"]) == 0
    assert "train 4,000 rows, test 1,000 rows; D = 784" in capsys.readouterr().out
    data_set, embedded = shards.Shards(tmp_path / "mnist5k"), data.load("mnist5k")
    assert (data_set.likelihood, data_set.image_shape) == ("bernoulli", (28, 28))
    test = torch.cat(list(data_set.split("test").batches(1000)))
    assert sorted(_as_set([test])) == sorted(bytes(r) for r in embedded.test.numpy())

    images = (np.random.default_rng(0).random((30, 5, 4)) * 255).astype(np.uint8)
    np.savez(tmp_path / "faces.npz", train=images[:25], test=images[25:].astype(np.float32) / 255)
    assert cli.main(["convert", "--array", str(tmp_path / "faces.npz"), "--likelihood", "gaussian",
                     "--out", str(tmp_path / "faces")]) == 0
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
    shards.from_images(folder, tmp_path / "all", test_fraction=0.0)  # no test split
    assert shards.Shards(tmp_path / "all").splits == ("train",)
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
