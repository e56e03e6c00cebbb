"""No run lost, no silent wrong result: `aevb-fast train` and `evaluate` under misuse and damage.
A directory holding a run is refused unless resumed or overwritten; a second run into a directory
in use fails at once, a stale lock is taken over; an unwritable or full --out fails before
training, or mid-run keeping the last checkpoint; a resume or evaluation on other data is
refused, on the same data under another path accepted; a damaged or malformed checkpoint falls
back to the previous one; bad settings fail with one line naming them; a diverged run stops."""

import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from aevb_fast.training import cli, evaluate, shards
from aevb_fast.training.models import VAE
from aevb_fast.training.run_files import RunDirectory, RunFailed, serialize
from aevb_fast.training.train import TrainConfig, load_checkpoint, load_run, train

TINY = dict(hidden_dim=8, latent_dim=2, batch_size=20, samples=40, eval_every=20, figures=False)


def _toy_rows(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 16), dtype=np.uint8)


def _toy(directory: Path, seed: int = 0, test: bool = True) -> Path:
    """A small sharded data set of 4 x 4 images: 100 train rows (and 20 test rows)."""
    splits = {"train": _toy_rows(100, seed), **({"test": _toy_rows(20, seed + 1)} if test else {})}
    shards.write(directory, splits, name="toy", image_shape=(4, 4), likelihood="bernoulli", shard_rows=50)
    return directory


@pytest.fixture
def data(tmp_path) -> Path:
    return _toy(tmp_path / "toy")


def _config(data: Path, out: Path, **settings) -> TrainConfig:
    return TrainConfig(**{**TINY, "dataset": "shards", "data_path": str(data), "out": str(out), **settings})


def _cli(capsys, *argv: str) -> tuple[int, str]:
    """aevb-fast's exit status and what it printed on stderr."""
    with pytest.raises(SystemExit) as exit_:
        cli.main(list(argv))
    return exit_.value.code, capsys.readouterr().err


def _parameters(out: Path) -> dict:
    return load_checkpoint(out)["model"]


def _no_training(monkeypatch) -> None:
    def refuse(*_):
        raise AssertionError("a training step ran")

    monkeypatch.setattr("aevb_fast.training.minibatches.ShardStream.next", refuse)


# 1. A directory that holds a run


def test_a_directory_holding_a_run_is_refused_unless_resumed_or_overwritten(tmp_path, data, capsys, monkeypatch):
    out = tmp_path / "run"
    train(_config(data, out), progress=False)
    files = {p.name: p.read_bytes() for p in out.iterdir()}
    code, err = _cli(
        capsys,
        "train",
        "--dataset",
        "shards",
        "--data-path",
        str(data),
        "--hidden-dim",
        "8",
        "--latent-dim",
        "2",
        "--batch-size",
        "20",
        "--samples",
        "40",
        "--out",
        str(out),
    )
    assert code == 2 and err.count("\n") == 1
    assert (
        f"{out} already holds a run at 40 samples (checkpoint.pt, checkpoint.prev.pt, metrics.csv, "
        "metrics.json): continue it with --resume, train into another --out, or replace it with --overwrite"
    ) in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == files  # untouched
    with pytest.raises(ValueError, match=r"--resume continues the run in --out and --overwrite replaces it: give one"):
        train(_config(data, out), resume=True, overwrite=True, progress=False)
    train(_config(data, out, samples=20, seed=1), overwrite=True, progress=False)
    assert load_checkpoint(out)["samples"] == 20 and not (out / "checkpoint.prev.pt").exists()
    # Settings, data and directory are checked before anything of the old run is removed.
    with pytest.raises(ValueError, match=r"hidden_dim must be a positive int, got 0"):
        train(_config(data, out, hidden_dim=0), overwrite=True, progress=False)
    assert load_checkpoint(out)["samples"] == 20


# 2. One run at a time


def test_a_second_run_into_a_directory_in_use_fails_at_once(tmp_path, data, monkeypatch):
    out = tmp_path / "run"
    with RunDirectory(out):
        _no_training(monkeypatch)
        with pytest.raises(
            ValueError,
            match=rf"{out} is in use by another training run \(pid {os.getpid()} on host "
            r".+ since .+\): wait for it to end, or train into another --out",
        ):
            train(_config(data, out), progress=False)
        assert (out / "lock").exists()
    assert not (out / "lock").exists()


def test_the_lock_of_a_killed_run_is_taken_over(tmp_path, data, capsys):
    out = tmp_path / "run"
    script = (
        "import os, signal; from aevb_fast.training.run_files import RunDirectory; "
        f"RunDirectory({str(out)!r}).__enter__(); "
        "os.kill(os.getpid(), signal.SIGKILL)"
    )
    assert subprocess.run([sys.executable, "-c", script]).returncode == -signal.SIGKILL
    assert "holder" in (out / "lock").read_text()
    train(_config(data, out), progress=False)
    assert f"took over the lock of {out}, whose holder (pid " in capsys.readouterr().err
    assert load_checkpoint(out)["samples"] == 40 and not (out / "lock").exists()


# 3. A directory that cannot be written


def test_an_unwritable_out_fails_before_training(tmp_path, data, monkeypatch):
    _no_training(monkeypatch)
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match=r"--out .*file cannot be made a directory \(File exists\)"):
        train(_config(data, tmp_path / "file"), progress=False)
    with pytest.raises(ValueError, match=r"--out .*file/run cannot be made a directory \(Not a directory\)"):
        train(_config(data, tmp_path / "file" / "run"), progress=False)
    full = tmp_path / "full"
    full.mkdir()
    (full / "lock").symlink_to("/dev/full")  # every write there fails as on a full disk
    with pytest.raises(ValueError, match=r"--out .*full cannot be written \(No space left on device\)"):
        train(_config(data, full), progress=False)


def test_a_full_disk_mid_run_stops_the_run_and_keeps_the_last_checkpoint(tmp_path, data, capsys):
    out = tmp_path / "run"
    train(_config(data, out), progress=False)
    kept = (out / "checkpoint.pt").read_bytes()
    temporary = out / f"checkpoint.pt.{os.getpid()}.tmp"
    temporary.symlink_to("/dev/full")
    with pytest.raises(
        RunFailed,
        match=rf"{out} cannot be written \(No space left on device\) at 60 samples: the last "
        rf"good checkpoint, {out}/checkpoint.pt at 40 samples, is kept; make room and "
        r"continue with --resume",
    ):
        train(_config(data, out, samples=80), resume=True, progress=False)
    assert (out / "checkpoint.pt").read_bytes() == kept and not temporary.exists()
    train(_config(data, out, samples=80), resume=True, progress=False)
    assert load_checkpoint(out)["samples"] == 80


# 4. The data a run trained on


def test_resume_and_evaluate_refuse_other_data_and_accept_the_same_under_another_path(tmp_path, monkeypatch, capsys):
    first, second = tmp_path / "first", tmp_path / "second"
    _toy(first / "toy")
    _toy(second / "toy", seed=7)  # the same relative path, other rows
    (tmp_path / "link").symlink_to(first)
    out = tmp_path / "run"
    monkeypatch.chdir(first)
    train(_config(Path("toy"), out, samples=20), progress=False)
    assert load_checkpoint(out)["config"].data_path == str(first / "toy")  # stored resolved
    monkeypatch.chdir(second)
    with pytest.raises(
        ValueError,
        match=rf"--resume: {out}/checkpoint.pt trained on other data: {first}/toy "
        rf"\(fingerprint \w+\) then, {second}/toy \(fingerprint \w+\) now",
    ):
        train(_config(Path("toy"), out, samples=40), resume=True, progress=False)
    # Another spelling of the same path, and the defaults written out, are the same run.
    train(_config(tmp_path / "link" / "." / "toy", out, samples=40, lr=0.02), resume=True, progress=False)
    # evaluate reads the data at the path stored, whatever the current directory ...
    assert load_run(out)[1].shape == (20, 16)
    # ... refuses other data there, and takes the run's own data where they moved.
    (first / "toy").rename(first / "moved")
    _toy(first / "toy", seed=3)
    code, err = _cli(capsys, "evaluate", "--out", str(out), "--k", "2")
    assert code == 2 and f"{out} trained on {first}/toy (fingerprint" in err and "holds other data now" in err
    assert load_run(out, str(first / "moved"))[1].shape == (20, 16)


def test_settings_written_as_their_defaults_are_the_same_run(tmp_path, data):
    out = tmp_path / "run"
    train(_config(data, out, hidden_dim=None, samples=20), progress=False)
    saved = load_checkpoint(out)["config"]
    assert (saved.hidden_dim, saved.lr) == (500, 0.02)  # the values used, stored
    train(_config(data, out, hidden_dim=500, lr=0.02, samples=40), resume=True, progress=False)
    assert load_checkpoint(out)["samples"] == 40


# 5. Damaged and malformed checkpoints


def _flip_a_bit_of(tensor: torch.Tensor, file: Path) -> None:
    contents = bytearray(file.read_bytes())
    at = contents.find(tensor.numpy().tobytes())
    assert at > 0
    contents[at + 1] ^= 0x40
    file.write_bytes(bytes(contents))


def test_a_flipped_bit_falls_back_to_the_previous_checkpoint(tmp_path, data, capsys):
    out = tmp_path / "run"
    whole = train(_config(data, out, samples=60), progress=False)
    train(_config(data, tmp_path / "cut", samples=40), progress=False)
    checkpoint = tmp_path / "cut" / "checkpoint.pt"
    _flip_a_bit_of(torch.load(checkpoint, weights_only=True)["model"]["decoder.logits.bias"], checkpoint)
    assert torch.load(checkpoint, weights_only=True)["samples"] == 40  # it unpickles: only the checksum tells
    assert load_checkpoint(tmp_path / "cut")["samples"] == 20
    assert f"{checkpoint} is damaged: its contents do not match its checksum; using" in capsys.readouterr().err
    resumed = train(_config(data, tmp_path / "cut", samples=60), resume=True, progress=False)
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def _malformed(state: dict, case: str) -> dict:
    state = {**state, "config": dict(vars(state["config"]))}
    if case == "unknown setting":
        state["config"]["colour"] = "red"
    elif case == "missing setting":
        del state["config"]["seed"]
    elif case == "invalid setting":
        state["config"]["hidden_dim"] = 0
    elif case == "model shape":
        state["model"] = {**state["model"], "decoder.logits.bias": torch.zeros(3)}
    elif case == "optimizer state":
        optimizer = state["optimizer"]
        state["optimizer"] = {
            **optimizer,
            "state": {**optimizer["state"], 0: {**optimizer["state"][0], "sum": torch.zeros(2)}},
        }
    elif case == "rng state":
        state["rng"] = [torch.zeros(3, dtype=torch.uint8)]
    elif case == "data stream":
        state["data"] = [{"epoch": -1, "step": "x"}]
    elif case == "not a dict":
        state = [1, 2]
    return state


MALFORMED = [
    "unknown setting",
    "missing setting",
    "invalid setting",
    "model shape",
    "optimizer state",
    "rng state",
    "data stream",
    "not a dict",
]


@pytest.mark.parametrize("case", MALFORMED)
def test_a_malformed_checkpoint_falls_back_or_fails_with_a_message(tmp_path, data, capsys, case):
    out = tmp_path / "run"
    train(_config(data, out), progress=False)
    state = load_checkpoint(out)
    state.pop("format")
    bad = _malformed(state, case)
    # The checksum is right: the structure itself must be checked.
    (out / "checkpoint.pt").write_bytes(serialize(bad) if isinstance(bad, dict) else b"")
    if isinstance(bad, list):
        torch.save(bad, out / "checkpoint.pt")
    model = train(_config(data, out, samples=60), resume=True, progress=False)
    assert f"{out}/checkpoint.pt" in capsys.readouterr().err and load_checkpoint(out)["samples"] == 60
    assert isinstance(model, VAE)
    # Neither checkpoint usable: one line saying why, for each.
    (out / "checkpoint.pt").write_bytes(serialize(bad) if isinstance(bad, dict) else b"")
    (out / "checkpoint.prev.pt").write_bytes(b"")
    code, err = _cli(
        capsys,
        "train",
        "--dataset",
        "shards",
        "--data-path",
        str(data),
        "--hidden-dim",
        "8",
        "--latent-dim",
        "2",
        "--batch-size",
        "20",
        "--samples",
        "80",
        "--eval-every",
        "20",
        "--no-figures",
        "--out",
        str(out),
        "--resume",
    )
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"aevb-fast train: error: no usable checkpoint in {out}: {out}/checkpoint.pt")


def test_checkpoints_of_the_earlier_format_are_refused_with_a_reason(tmp_path):
    state = {key: 0 for key in ("model", "optimizer", "data", "rng", "samples", "wall_s", "metrics", "config")}
    torch.save(state, tmp_path / "checkpoint.pt")
    with pytest.raises(
        ValueError,
        match=r"checkpoint.pt was written by an earlier aevb-fast \(checkpoint format 1, "
        r"without a checksum or a fingerprint of its data\)",
    ):
        load_checkpoint(tmp_path)


# 6. A minibatch larger than the training set


def test_a_batch_larger_than_the_training_rows_is_refused(tmp_path, data):
    with pytest.raises(
        ValueError,
        match=r"batch_size 120 is larger than the 100 training rows of toy: a minibatch "
        r"holds distinct rows of one epoch",
    ):
        train(_config(data, tmp_path / "run", batch_size=120), progress=False)
    # In memory, where each step used to take the 4,000 rows and count 5,000.
    with pytest.raises(ValueError, match=r"batch_size 5000 is larger than the 4,000 training rows of mnist5k"):
        train(TrainConfig(**{**TINY, "batch_size": 5000, "out": str(tmp_path / "run")}), progress=False)
    assert not (tmp_path / "run").exists()


# 7 and 12. Settings: every one checked in one place, one line naming it

BAD_SETTINGS = [
    (dict(hidden_dim=0), r"hidden_dim must be a positive int, got 0"),
    (dict(latent_dim=-1), r"latent_dim must be a positive int, got -1"),
    (dict(batch_size=True), r"batch_size must be a positive int, got True"),
    (dict(n_samples=1.5), r"n_samples must be a positive int, got 1.5"),
    (dict(eval_every=0), r"eval_every must be a positive int, got 0"),
    (dict(eval_rows=0), r"eval_rows must be a positive int, got 0"),
    (dict(samples=0), r"samples must be a positive int, got 0"),
    (dict(seed=2**64), r"seed must be an int in \[0, 2\*\*63\), got 18446744073709551616"),
    (dict(seed=-1), r"seed must be an int in \[0, 2\*\*63\), got -1"),
    (dict(lr=0.0), r"lr must be a positive number, got 0.0"),
    (dict(lr=float("nan")), r"lr must be a positive number, got nan"),
    (dict(device="gpu"), r"device='gpu' is not a device training runs on: give 'cpu', 'cuda' or 'cuda:N'"),
    (dict(device="meta"), r"device='meta' is not a device training runs on"),
    (dict(backend="fast"), r"backend='fast' is not supported"),
    (dict(out=""), r"out must be a path, got ''"),
    (dict(figures="no"), r"figures must be True or False, got 'no'"),
]


@pytest.mark.parametrize("settings, message", BAD_SETTINGS, ids=[m.split(" ")[0] for _, m in BAD_SETTINGS])
def test_bad_settings_are_named(tmp_path, settings, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{**TINY, "out": str(tmp_path), **settings}).check()


@pytest.mark.skipif(torch.cuda.is_available(), reason="the messages of a machine without a GPU")
def test_devices_and_backends_that_cannot_serve_are_named_in_one_line(tmp_path, data, capsys):
    common = ["train", "--dataset", "shards", "--data-path", str(data), "--out", str(tmp_path / "run")]
    for device in ("cuda", "cuda:5"):
        code, err = _cli(capsys, *common, "--device", device)
        assert code == 2 and err.count("\n") == 1
        assert f"device={device!r} asks for a GPU, but this torch is a CPU build: give --device cpu" in err
    code, err = _cli(capsys, *common, "--backend", "cuda")
    assert code == 2 and "backend='cuda' cannot serve cpu tensors here: the cuda backend runs on CUDA tensors" in err
    code, err = _cli(capsys, *common, "--seed", str(2**64))
    assert code == 2 and "seed must be an int in [0, 2**63), got 18446744073709551616" in err
    # The Triton kernels serve CPU tensors only under the interpreter, which the tests turn on.
    triton = subprocess.run(
        [sys.executable, "-m", "aevb_fast", *common, "--backend", "triton"],
        text=True,
        capture_output=True,
        env={**os.environ, "TRITON_INTERPRET": "0"},
    )
    assert triton.returncode == 2 and triton.stderr.count("\n") == 1, triton.stderr
    assert "backend='triton' cannot serve cpu tensors here" in triton.stderr
    assert not (tmp_path / "run").exists()


def test_messages_are_one_line_without_terminal_codes(tmp_path, capsys):
    code, err = _cli(capsys, "evaluate", "--out", str(tmp_path / "a\x1b[31mred\nrun"))
    assert code == 2 and err.count("\n") == 1 and "\x1b" not in err and "a\\x1b[31mred\\nrun" in err
    for flag, message in (
        ("--k", "--k must be a positive int, got 0"),
        ("--n-samples", "--n-samples must be a positive int, got 0"),
    ):
        assert _cli(capsys, "evaluate", "--out", str(tmp_path), flag, "0") == (
            2,
            f"aevb-fast evaluate: error: {message}\n",
        )


# 8. A diverged run


def test_a_diverged_run_stops_with_a_message_and_keeps_its_last_good_checkpoint(tmp_path, data, capsys, monkeypatch):
    out = tmp_path / "run"
    code, err = _cli(
        capsys,
        "train",
        "--dataset",
        "shards",
        "--data-path",
        str(data),
        "--hidden-dim",
        "8",
        "--latent-dim",
        "2",
        "--batch-size",
        "20",
        "--samples",
        "200",
        "--eval-every",
        "20",
        "--lr",
        "100",
        "--no-figures",
        "--out",
        str(out),
    )
    assert code == 1 and err.count("\n") == 1
    assert (
        "error: training diverged: the bounds at 20 samples are nan (train) and nan (test); no checkpoint was "
        "written; train anew with a smaller --lr (into another --out, or with --overwrite)"
    ) in err
    assert not (out / "checkpoint.pt").exists() and not (out / "lock").exists()
    # A minibatch whose bound is not finite after two checkpoints: its loss made NaN.
    forward, steps = VAE.forward, []

    def poisoned(self, x, **kwargs):
        loss = forward(self, x, **kwargs)
        steps.append(torch.is_grad_enabled())  # training steps; evaluations run without gradients
        return loss * math.nan if sum(steps) > 2 else loss

    monkeypatch.setattr(VAE, "forward", poisoned)
    with pytest.raises(
        RunFailed,
        match=rf"training diverged: the bound of the minibatch at 60 samples is nan; the last "
        rf"good checkpoint, {tmp_path}/again/checkpoint.pt at 40 samples, is kept",
    ):
        train(_config(data, tmp_path / "again", samples=200), progress=False)
    assert load_checkpoint(tmp_path / "again")["samples"] == 40


def test_a_non_finite_bound_between_evaluations_names_the_minibatches_it_lies_in(tmp_path, data, monkeypatch):
    # The steps' bounds are summed where they run and read at the evaluation: a NaN in the second of
    # three minibatches is found there, before the evaluation, and named by the window it lies in.
    forward, steps = VAE.forward, []

    def poisoned(self, x, **kwargs):
        loss = forward(self, x, **kwargs)
        steps.append(torch.is_grad_enabled())
        return loss * math.nan if sum(steps) == 2 else loss

    monkeypatch.setattr(VAE, "forward", poisoned)
    with pytest.raises(
        RunFailed,
        match=r"training diverged: the bound of a minibatch between 20 and 60 samples is "
        r"nan; no checkpoint was written",
    ):
        train(_config(data, tmp_path / "run", samples=200, eval_every=60), progress=False)
    assert sum(steps) == 3


# 13. A data set without test rows


def test_a_data_set_without_test_rows_is_refused(tmp_path):
    data = _toy(tmp_path / "toy", test=False)
    with pytest.raises(
        ValueError,
        match=r"toy has no test rows: training needs train rows and evaluates its bound on "
        r"test rows too",
    ):
        train(_config(data, tmp_path / "run"), progress=False)


# 12. Evaluation in bounded memory, for any k


def test_evaluation_runs_in_passes_of_bounded_size_and_combines_them_exactly(monkeypatch):
    torch.manual_seed(0)
    model = VAE(data_dim=16, hidden_dim=8, latent_dim=2, init_std=0.3)
    rows = torch.from_numpy(_toy_rows(10, 0))
    sizes = []
    forward = VAE.forward

    def spy(self, x, **kwargs):
        sizes.append(x.shape[0] * kwargs["n_samples"])
        return forward(self, x, **kwargs)

    monkeypatch.setattr(VAE, "forward", spy)
    # Every call draws the same noise key: then 6 samples in two passes of 3 are the same 3 samples
    # twice, whose bound, combined exactly, is that of 3 samples.
    monkeypatch.setattr(torch, "randint", lambda *args, **kwargs: torch.zeros(1, dtype=torch.int64))
    for estimate in (
        lambda n: evaluate.marginal_log_likelihood(model, rows, k=n, pass_samples=3),
        lambda n: evaluate.lower_bound(model, rows, n_samples=n, pass_samples=3),
    ):
        three, six = estimate(3).nats, estimate(6).nats
        assert six == pytest.approx(three, rel=1e-9)
    assert max(sizes) == 3 and sum(sizes) == 2 * (3 + 6) * 10


# Further misuses: an interrupted run, a checkpoint that is not a file, a model too large for memory


def test_an_interrupted_run_says_so_in_one_line_and_releases_its_directory(tmp_path, data):
    out = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "aevb_fast",
        "train",
        "--dataset",
        "shards",
        "--data-path",
        str(data),
        "--hidden-dim",
        "8",
        "--latent-dim",
        "2",
        "--batch-size",
        "20",
        "--samples",
        "1e9",
        "--eval-every",
        "20",
        "--no-figures",
        "--out",
        str(out),
    ]
    # SIGINT as Ctrl-C sends it (a shell starts background jobs with SIGINT ignored: undo that here).
    run = subprocess.Popen(
        command, stderr=subprocess.PIPE, text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)
    )
    while not (out / "checkpoint.pt").exists():
        assert run.poll() is None, run.stderr.read()
    run.send_signal(signal.SIGINT)
    assert run.wait(timeout=60) == 130
    assert (
        run.stderr.read() == f"aevb-fast train: interrupted; continue from the last checkpoint in {out} with --resume\n"
    )
    assert not (out / "lock").exists() and load_checkpoint(out)["samples"] >= 20


def test_a_checkpoint_that_is_not_a_regular_file_is_skipped_not_read(tmp_path, data, capsys):
    out = tmp_path / "run"
    train(_config(data, out), progress=False)
    (out / "checkpoint.pt").unlink()
    os.mkfifo(out / "checkpoint.pt")  # reading it would block forever
    assert load_checkpoint(out)["samples"] == 20
    assert f"{out}/checkpoint.pt is not a regular file; using {out}/checkpoint.prev.pt" in capsys.readouterr().err


def test_a_model_too_large_for_memory_is_one_line(tmp_path, data, capsys):
    # 200 PB of weights: more than a 57-bit address space holds, so the allocation fails at once
    # even where the kernel overcommits memory.
    code, err = _cli(
        capsys,
        "train",
        "--dataset",
        "shards",
        "--data-path",
        str(data),
        "--latent-dim",
        str(10**14),
        "--out",
        str(tmp_path / "run"),
    )
    assert code == 1 and err.count("\n") == 1
    assert err.startswith("aevb-fast train: error: out of memory (") and "can't allocate memory" in err
    assert not (tmp_path / "run" / "lock").exists()
