"""End to end: one training step of the paper's MNIST model (784-500-Nz tanh MLPs, Adagrad, docs/paper.md)
with the fused loss against the same model with the reference loss and with the PyTorch VAE
example's hand-written loss (sigmoid + binary_cross_entropy + KLD), in samples per second."""

from collections.abc import Callable

import torch
import torch.nn.functional as F

from aevb_fast.training.models import VAE

from .cases import fused_backends
from .timing import clock, interleaved

LATENT = 20


def example_loss(model: VAE, x: torch.Tensor) -> torch.Tensor:
    """The PyTorch VAE example's loss_function on the same model, per datapoint."""
    mu, logvar = model.encoder(x)
    std = torch.exp(0.5 * logvar)
    z = mu + torch.randn_like(std) * std
    bce = F.binary_cross_entropy(torch.sigmoid(model.decoder(z)), x, reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return (bce + kld) / x.shape[0]


def losses(device: torch.device) -> dict[str, Callable[[VAE, torch.Tensor], torch.Tensor]]:
    fused = {f"aevb_fast[{b}]": (lambda model, x, b=b: model(x, backend=b)) for b in fused_backends(device)}
    return fused | {"reference": lambda model, x: model(x, backend="torch"), "pytorch example": example_loss}


def measure(device: torch.device, dtype: torch.dtype, batch: int, rounds: int, warmup: int) -> dict[str, float]:
    """Samples per second of one Adagrad step per loss, timed interleaved; every loss trains its own
    copy of one initial model on the same grey-level batch."""
    torch.manual_seed(0)
    x = torch.rand(batch, 784, device=device, dtype=dtype)
    initial = VAE(784, 500, LATENT).to(device, dtype)
    steps = {}
    for name, loss_fn in losses(device).items():
        model = VAE(784, 500, LATENT).to(device, dtype)
        model.load_state_dict(initial.state_dict())
        optimizer = torch.optim.Adagrad(model.parameters(), lr=0.01)

        def step(model=model, optimizer=optimizer, loss_fn=loss_fn):
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model, x).backward()
            optimizer.step()

        steps[name] = lambda step=step: {"step": clock(step, device)[0]}
    timings = interleaved(steps, rounds, warmup)
    return {name: batch / phases["step"].median for name, phases in timings.items()}
