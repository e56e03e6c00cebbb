"""The encoder gradient's signal-to-noise ratio against the number of importance samples k, for each
gradient estimator of the importance-weighted bound (aevb_fast.GRADIENTS), in Rainforth et al.'s
(2018) Gaussian problem: z ~ N(0, I), x|z ~ N(z, I) (the posterior N(x/2, I/2)), and
q(z|x) = N(x/2 + delta, 2/3 I) a little off it, Z = 10 latent units. They show the standard
estimator's SNR falls like 1/sqrt(k); DReG's (Tucker et al. 2018) rises like sqrt(k); STL's, biased
for k > 1, is listed beside them.

    python -m benchmarks.gradient_snr [--out benchmarks/results/gradient-snr]

Each estimate draws the gradient of one datapoint's bound `rows` times (one datapoint repeated in
rows, each drawing its own noise) and reports |mean| / std of d/dmu, averaged over the coordinates.
Writes results.md (the table) and snr.png (log-log plot) into --out.
"""

import argparse
import math
from pathlib import Path

import torch

import aevb_fast

KS = (1, 4, 16, 64, 256, 1024)


def snr(gradient: str, k: int, rows: int, latent: int = 10, backend: str | None = None) -> float:
    """|E g| / std g of d/dmu of the k-sample importance-weighted bound, averaged over mu's coordinates."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, latent, generator=g, dtype=torch.float64)
    delta = 0.1 * torch.randn(1, latent, generator=g, dtype=torch.float64)
    mu = (x / 2 + delta).expand(rows, latent).clone().requires_grad_()
    logvar = torch.full((rows, latent), math.log(2 / 3), dtype=torch.float64, requires_grad=True)
    loss = aevb_fast.elbo_loss(
        lambda z: (z, torch.zeros_like(z)),
        x.expand(rows, latent),
        mu,
        logvar,
        n_samples=k,
        estimator="mc",
        iwae=True,
        gradient=gradient,
        likelihood="gaussian",
        reduction="sum",
        seed=1,
        backend=backend,
    )
    (grad_mu,) = torch.autograd.grad(loss, (mu,))
    return (grad_mu.mean(0).abs() / grad_mu.std(0)).mean().item()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "gradient-snr"))
    parser.add_argument("--samples", type=int, default=20_000_000, help="decoded samples per estimate (rows x k)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    draws = [max(1000, args.samples // k) for k in KS]
    table = {g: [snr(g, k, n) for k, n in zip(KS, draws)] for g in aevb_fast.GRADIENTS}
    lines = [
        "| k | draws | " + " | ".join(aevb_fast.GRADIENTS) + " |",
        "|---|---|" + "---|" * len(aevb_fast.GRADIENTS),
        *(
            f"| {k} | {n:,} | " + " | ".join(f"{table[g][i]:.4f}" for g in aevb_fast.GRADIENTS) + " |"
            for i, (k, n) in enumerate(zip(KS, draws))
        ),
    ]
    (out / "results.md").write_text(
        "Encoder gradient SNR (|mean| / std of d/dmu) of the importance-weighted bound against k, "
        f"Rainforth et al.'s Gaussian problem (Z = 10), {args.samples:,} decoded samples per estimate "
        "(at least 1000 draws). An estimate from n draws reads about 1/sqrt(n) (the mean's noise) where "
        "the true SNR is smaller.\n\n" + "\n".join(lines) + "\n"
    )
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for g in aevb_fast.GRADIENTS:
        ax.loglog(KS, table[g], marker="o", label=g)
    ax.set_xlabel("k (importance samples)")
    ax.set_ylabel("encoder gradient SNR")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "snr.png", dpi=120)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
