"""Command line: `python -m aevb_fast info` (or `aevb-fast info`) prints what a bug report needs."""

import argparse
import json
import os
import sys
from pathlib import Path

import torch

from .. import GRADIENTS, LIKELIHOODS, SEED_LIMIT, info
from ._checks import check_count
from .run_files import RunFailed, write_atomically

FUSED_HEAD = {"auto": None, "on": True, "off": False}


def _samples(text: str) -> int:
    """A sample count >= 0, written plainly or as 1e5."""
    return 0 if text.strip() in ("0", "0.0") else _count(text)


def _count(text: str) -> int:
    """A sample count as an int, written plainly or as 1e6."""
    value = float(text)
    if not value.is_integer() or value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return int(value)


def _likelihood_argument(parser, default, help_text) -> None:
    """--likelihood NAME, a name of LIKELIHOODS written with hyphens (continuous-bernoulli) or not."""
    parser.add_argument(
        "--likelihood",
        type=lambda text: text.replace("-", "_"),
        choices=list(LIKELIHOODS),
        metavar="{" + ",".join(name.replace("_", "-") for name in LIKELIHOODS) + "}",
        default=default,
        help=help_text,
    )


def _train_parser(commands) -> None:
    from .train import OPTIMIZERS, PRECISIONS, TrainConfig

    defaults = TrainConfig()
    p = commands.add_parser("train", help="train the paper's VAE (Adagrad, M = 100, L = 1, estimator B by default)")
    p.add_argument("--dataset", default=defaults.dataset, help="mnist5k (embedded), mnist, frey, or shards (streamed)")
    p.add_argument(
        "--data-path",
        default=None,
        help="mnist: directory of the IDX .gz files; frey: frey_rawface.mat; "
        "shards: the directory aevb-fast convert wrote",
    )
    p.add_argument("--latent-dim", type=int, default=defaults.latent_dim, help="Nz")
    p.add_argument("--hidden-dim", type=int, default=None, help="default: 500 for MNIST, 200 for Frey Face")
    _likelihood_argument(
        p,
        None,
        "the decoder's p(x|z) (default: the data set's own, bernoulli for MNIST, gaussian for Frey Face); "
        "continuous-bernoulli is a density for grey levels in [0, 1]",
    )
    p.add_argument("--optimizer", default=defaults.optimizer, choices=OPTIMIZERS)
    p.add_argument("--lr", type=float, default=None, help="default: 0.02 for adagrad, 1e-3 for adam")
    p.add_argument("--batch-size", type=int, default=defaults.batch_size, help="M")
    p.add_argument("--n-samples", type=int, default=defaults.n_samples, help="L")
    p.add_argument("--estimator", default=defaults.estimator, choices=["analytic", "mc"], help="B (analytic) or A (mc)")
    p.add_argument(
        "--iwae", action="store_true", help="train on the importance-weighted bound, k = --n-samples (--estimator mc)"
    )
    p.add_argument(
        "--gradient",
        default=defaults.gradient,
        choices=GRADIENTS,
        help="the encoder's gradient estimator (--estimator mc): stl (sticking the landing), dreg (doubly "
        "reparameterized, with --iwae)",
    )
    p.add_argument("--beta", type=float, default=defaults.beta, help="the KL term's weight")
    p.add_argument(
        "--kl-warmup",
        type=_samples,
        default=defaults.kl_warmup,
        help="samples over which the KL term's weight rises linearly from 0 to --beta, e.g. 1e5",
    )
    p.add_argument(
        "--free-bits",
        type=float,
        default=defaults.free_bits,
        help="nats per latent unit below which the KL term costs that much and pushes no further "
        "(Kingma et al. 2016; --estimator analytic)",
    )
    p.add_argument("--samples", type=_count, default=defaults.samples, help="training samples to evaluate, e.g. 1e6")
    p.add_argument("--eval-every", type=_count, default=defaults.eval_every, help="samples between evaluations")
    p.add_argument(
        "--eval-rows", type=_count, default=None, help="rows of each split to evaluate the bounds on (default: all)"
    )
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--device", default=defaults.device, help="cpu or cuda (under torchrun: each rank on its GPU)")
    p.add_argument("--backend", default=None, help="auto, triton, cuda, cpu or torch")
    p.add_argument(
        "--fused-head",
        default="auto",
        choices=list(FUSED_HEAD),
        help="the decoder's output layer and likelihood as one chunked op: auto (where it saves memory), on or off",
    )
    p.add_argument(
        "--precision",
        default=defaults.precision,
        choices=PRECISIONS,
        help="bfloat16: autocast (matrix products in bfloat16)",
    )
    p.add_argument("--compile", action="store_true", help="torch.compile the model for the training steps")
    p.add_argument(
        "--out",
        default=defaults.out,
        help="directory for metrics and the checkpoint (on a file system every rank sees)",
    )
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run that --out holds (without this or --resume, such a directory is refused)",
    )
    p.add_argument("--no-figures", dest="figures", action="store_false", help="skip the PNG figures")


def _evaluate(out: str, k: int, n_samples: int, seed: int, data_path: str | None) -> dict:
    """The test set's bounds (estimators B and A) and marginal log-likelihood of a run, each an
    evaluate.Estimate (nats and bits per dimension with standard errors); also written to
    OUT/evaluation.json, flat."""
    from .evaluate import lower_bound, marginal_log_likelihood
    from .train import load_run

    check_count("--k", k)
    check_count("--n-samples", n_samples)
    if not 0 <= seed < SEED_LIMIT:
        raise ValueError(f"--seed must be an int in [0, 2**63), got {seed}")
    model, test, config = load_run(out, data_path)
    if test.shape[0] == 0:
        raise ValueError(f"the data set of {out} has no test rows to evaluate")
    common = dict(device=next(model.parameters()).device, backend=config.backend, seed=seed)
    result = {
        "test_bound_B": lower_bound(model, test, estimator="analytic", n_samples=n_samples, **common),
        "test_bound_A": lower_bound(model, test, estimator="mc", n_samples=n_samples, **common),
        f"test_log_likelihood_k{k}": marginal_log_likelihood(model, test, k=k, **common),
    }
    flat = {}
    for name, estimate in result.items():
        flat |= {
            name: estimate.nats,
            f"{name}_se": estimate.standard_error,
            f"{name}_bits_per_dim": estimate.bits_per_dim,
            f"{name}_bits_per_dim_se": estimate.bits_per_dim_error,
        }
    write_atomically(Path(out) / "evaluation.json", json.dumps(flat | {"test_rows": test.shape[0]}, indent=1).encode())
    return result


def _convert_parser(commands) -> None:
    p = commands.add_parser("convert", help="write a data set as streaming shards (aevb_fast.training.shards)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", help="mnist5k (embedded), mnist or frey")
    source.add_argument("--images", help="a folder of images of one size (read as grey levels)")
    source.add_argument("--array", help="an .npy array of images, or an .npz with arrays train and test")
    p.add_argument("--data-path", default=None, help="mnist: directory of the IDX .gz files; frey: frey_rawface.mat")
    p.add_argument("--out", required=True, help="the directory to write index.json and the shards into")
    p.add_argument("--shard-rows", type=int, default=10_000, help="rows per shard (positive)")
    _likelihood_argument(p, "bernoulli", "the decoder the images call for (--images, --array)")
    p.add_argument(
        "--test-fraction",
        type=float,
        default=0.1,
        help="held out as the test split, 0 < f < 1: training evaluates its test bound on it (--images, --array)",
    )


def _convert(args) -> str:
    from . import data, shards

    options = dict(likelihood=args.likelihood, test_fraction=args.test_fraction, shard_rows=args.shard_rows)
    if args.dataset is not None:
        index = shards.from_dataset(data.load(args.dataset, args.data_path), args.out, args.shard_rows)
    elif args.images is not None:
        index = shards.from_images(args.images, args.out, **options)
    else:
        index = shards.from_array(args.array, args.out, **options)
    written = shards.Shards(index.parent)
    counts = ", ".join(f"{split} {written.split(split).rows:,} rows" for split in written.splits)
    return f"wrote {index} ({written.name}: {counts}; D = {written.dim})"


def main(argv: list[str] | None = None) -> int:
    """The command line; its exit status. A rank that torchrun started and that ends as planned
    (done, or an error it has reported) leaves with os._exit once its output is flushed: at
    interpreter shutdown gloo's worker threads still destroy finished collectives' work, whose
    tensors need the GIL that Python no longer hands out, and the rank died with SIGABRT after a run
    that had written everything ("terminate called without an active exception"; 2 to 3 runs in 25
    of 2 ranks on 2 cores, destroy_process_group called). An unexpected exception leaves as usual,
    with its traceback."""
    if not torch.distributed.is_torchelastic_launched():
        return _main(argv)
    try:
        code = _main(argv)
    except SystemExit as stop:  # parser.exit has printed its message
        code = stop.code if isinstance(stop.code, int) else 0 if stop.code is None else 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _main(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(prog="aevb-fast", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="print versions and which backends are built and usable here")
    _train_parser(commands)
    _convert_parser(commands)
    evaluate = commands.add_parser("evaluate", help="test bounds and marginal log-likelihood of a trained run")
    evaluate.add_argument("--out", required=True, help="the run's directory (aevb-fast train --out)")
    evaluate.add_argument("--k", type=int, default=1000, help="importance samples for log p(x)")
    evaluate.add_argument("--n-samples", type=int, default=1, help="samples L for the bounds")
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument(
        "--data-path",
        default=None,
        help="where the run's data are now, if they moved (checked against the checkpoint's fingerprint of them)",
    )
    args = parser.parse_args(argv)
    try:
        if args.command == "info":
            print(info())
        elif args.command == "train":
            from .train import TrainConfig, train

            settings = {k: v for k, v in vars(args).items() if k not in ("command", "resume", "overwrite")}
            settings["fused_head"] = FUSED_HEAD[settings["fused_head"]]
            train(TrainConfig(**settings), resume=args.resume, overwrite=args.overwrite)
        elif args.command == "convert":
            print(_convert(args))
        else:
            for name, estimate in _evaluate(args.out, args.k, args.n_samples, args.seed, args.data_path).items():
                print(f"{name:<28} {estimate}")
    except ValueError as error:  # settings, files or data that cannot serve: nothing was lost
        parser.exit(2, f"aevb-fast {args.command}: error: {_printable(error)}\n")
    except RunFailed as error:  # the run stopped on its own, saying what is kept
        parser.exit(1, f"aevb-fast {args.command}: error: {_printable(error)}\n")
    except RuntimeError as error:
        if not (isinstance(error, torch.OutOfMemoryError) or "can't allocate memory" in str(error)):
            raise  # a bug: its traceback is the report
        parser.exit(
            1,
            f"aevb-fast {args.command}: error: out of memory ({_printable(str(error).splitlines()[0])}); "
            "smaller settings (sizes, --batch-size, --k) need less\n",
        )
    except KeyboardInterrupt:
        resume = f"; continue from the last checkpoint in {args.out} with --resume" if args.command == "train" else ""
        parser.exit(130, f"aevb-fast {args.command}: interrupted{_printable(resume)}\n")
    except OSError as error:  # a file the run needs could not be read or written
        where = f": {error.filename}" if error.filename else ""
        parser.exit(2, f"aevb-fast {args.command}: error: {_printable(error.strerror or error)}{_printable(where)}\n")
    return 0


def _printable(message) -> str:
    """message with control characters (from file names, say) escaped: one line, no terminal codes."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in str(message))
