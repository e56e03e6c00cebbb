"""The figures a training run writes (PNG, matplotlib): the bound against training samples with the
paper's reference points (Figure 2), random samples from the model (Figure 5) and, for Nz = 2, the
learned manifold (Figure 4)."""

from pathlib import Path

import torch

from .models import VAE

# The paper's test bounds per datapoint (docs/paper.md, Figure 2), at 1e6, 1e7 and 1e8 samples evaluated.
PAPER_TEST_BOUND = {
    ("mnist", 3): {1e7: -138.0, 1e8: -133.4},
    ("mnist", 5): {1e6: -138.9, 1e7: -124.1, 1e8: -119.1},
    ("mnist", 10): {1e6: -128.3, 1e7: -108.5, 1e8: -103.7},
    ("mnist", 20): {1e6: -124.2, 1e7: -104.8, 1e8: -100.2},
    ("mnist", 200): {1e6: -119.9, 1e7: -103.9, 1e8: -100.2},
    ("frey", 2): {1e6: 673, 1e7: 823},
    ("frey", 5): {1e6: 761, 1e7: 1044},
    ("frey", 10): {1e6: 792, 1e7: 1171},
    ("frey", 20): {1e6: 754, 1e7: 1200},
}


def pyplot():
    """matplotlib.pyplot drawing to files, or a ValueError saying how to install it."""
    try:
        import matplotlib
    except ImportError:
        raise ValueError(
            "figures need matplotlib: pip install matplotlib (or pip install 'aevb-fast[experiments]')"
        ) from None
    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def bound_curve(rows: list[dict], dataset: str, latent_dim: int, path: Path) -> None:
    """Train and test bound per datapoint against training samples evaluated, log x axis, with the
    paper's test points for the same data and Nz where it reports them (full MNIST's for the
    5,000-digit sample, which is the nearest it has)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    samples = [r["samples"] for r in rows]
    ax.plot(samples, [r["train_bound"] for r in rows], label="train")
    ax.plot(samples, [r["test_bound"] for r in rows], label="test")
    paper = PAPER_TEST_BOUND.get(("frey" if dataset == "frey" else "mnist", latent_dim))
    if paper:
        ax.scatter(list(paper), list(paper.values()), marker="x", color="black", zorder=3, label="paper, test")
    ax.set_xscale("log")
    ax.set_xlabel("training samples evaluated")
    ax.set_ylabel("lower bound per datapoint (nats)")
    ax.set_title(f"{dataset}, Nz = {latent_dim}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _decoded_means(model: VAE, z: torch.Tensor) -> torch.Tensor:
    """The decoder's mean image for each z."""
    with torch.no_grad():
        return model.decoder.expectation(z)


def _grid(plt, images: torch.Tensor, image_shape, rows: int, path: Path, title: str) -> None:
    h, w = image_shape
    cols = images.shape[0] // rows
    tiles = images.view(rows, cols, h, w).permute(0, 2, 1, 3).reshape(rows * h, cols * w)
    fig, ax = plt.subplots(figsize=(cols * w / 28 * 0.6 + 0.5, rows * h / 28 * 0.6 + 0.5))
    ax.imshow(tiles.float().cpu().numpy(), cmap="gray", vmin=0, vmax=1)
    ax.set_axis_off()
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def samples(model: VAE, image_shape: tuple[int, int], path: Path, n: int = 10, seed: int = 0) -> None:
    """n x n images decoded from z ~ N(0, I) (the paper's Figure 5)."""
    plt = pyplot()
    weight = model.decoder.hidden.weight
    z = torch.randn(n * n, weight.shape[1], generator=torch.Generator().manual_seed(seed)).to(weight)
    _grid(plt, _decoded_means(model, z), image_shape, n, path, "random samples")


def manifold(model: VAE, image_shape: tuple[int, int], path: Path, n: int = 20) -> None:
    """For Nz = 2: the decoded means over a grid of z, linearly spaced coordinates on the unit square
    mapped through the Gaussian's inverse CDF (the paper's Figure 4)."""
    plt = pyplot()
    weight = model.decoder.hidden.weight
    if weight.shape[1] != 2:
        raise ValueError(f"the manifold figure needs Nz = 2, got Nz = {weight.shape[1]}")
    u = torch.linspace(0.5 / n, 1 - 0.5 / n, n, dtype=torch.float64)
    coords = torch.special.ndtri(u)
    z = torch.cartesian_prod(coords.flip(0), coords).flip(1).to(weight)  # rows top to bottom, columns left to right
    _grid(plt, _decoded_means(model, z), image_shape, n, path, "learned manifold")
