"""What is measured: each fused op at each size, by every provider a user could pick instead.

A provider turns the op's inputs into its outputs with one implementation:
  aevb_fast[<backend>]  the fused kernels (every kernel backend usable on the device)
  eager                 the plain PyTorch reference, aevb_fast.reference
  torch.compile         torch.compile of that reference
  pytorch example       the hand-written code of the PyTorch VAE example (sigmoid + BCE, KLD)
  torch.distributions   Normal.rsample, kl_divergence, Bernoulli(logits=...).log_prob

Every provider returns per-datapoint values (and z), so the backward of each is driven by the same
upstream gradients. A Case holds the inputs, the providers and the op's memory traffic.

The decoder heads (bernoulli_head, gaussian_head: the decoder's output layer and its likelihood,
[N, H] -> D) return the summed log-likelihood, a training loss; there "eager" is nn.functional.linear
followed by the reference likelihood, "Linear + aevb_fast[...]" the same layer followed by the fused
likelihood kernel, and aevb_fast[...] the fused head (aevb_fast.linear_*_log_prob).
"""

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch.distributions import Bernoulli, Normal, kl_divergence

import aevb_fast
from aevb_fast import reference as R
from aevb_fast.ops import backends

# name: (paper, medium, large) shapes. The paper's minibatch is 100 datapoints of 784 pixels with up
# to 200 latents; "large" is a wide decoder ([4096, 12288]) and a big latent batch ([65536, 256]).
SIZES = {
    "bernoulli": [(100, 784), (1000, 784), (4096, 12288)],
    "gaussian": [(100, 560), (1000, 784), (4096, 12288)],
    "reparameterize": [(100, 20), (1000, 200), (65536, 256)],
}
# The heads: (N, H, D), the paper's decoder layer at its minibatch, and a wide decoder at a large one.
SIZES |= {
    "bernoulli_head": [(100, 500, 784), (8192, 500, 12288)],
    "gaussian_head": [(100, 200, 560), (8192, 500, 12288)],
}
TINY = {"bernoulli": [(64, 300)], "gaussian": [(64, 300)], "reparameterize": [(128, 20)],
        "bernoulli_head": [(64, 16, 300)], "gaussian_head": [(64, 16, 300)]}
OPS = tuple(SIZES)


@dataclass
class Case:
    op: str
    shape: tuple[int, int]
    dtype: torch.dtype
    device: torch.device
    providers: dict[str, Callable[[], tuple[torch.Tensor, ...]]]
    leaves: list[torch.Tensor]  # inputs that take gradients
    upstream: tuple[torch.Tensor, ...]  # gradients of the outputs, the same for every provider
    # The least any implementation moves in forward + backward: each input read once, each output
    # and gradient written once. Effective bandwidth is this over the time taken.
    essential_bytes: int
    # What the fused kernels themselves read and write in forward + backward; at the copy's
    # bandwidth this takes the memory-bound limit of their time.
    kernel_bytes: int
    # A copy of the first input (read + write) is the memory-bound yardstick, timed in the same run.
    copy: Callable[[], torch.Tensor] = field(init=False)
    copy_bytes: int = field(init=False)

    def __post_init__(self):
        source = self.leaves[0].detach()
        self.copy = source.clone
        self.copy_bytes = 2 * source.numel() * source.element_size()

    @property
    def label(self) -> str:
        rows = f"{self.op} [{self.shape[0]}, {self.shape[1]}]"
        return rows if len(self.shape) == 2 else f"{rows} -> {self.shape[2]}"


def fused_backends(device: torch.device) -> list[str]:
    """The kernel backends to measure on `device`: those auto may pick (Triton's interpreter is for
    tests, not for timing)."""
    return [b for b in backends.usable(device.type) if b in backends.AUTO.get(device.type, ())]


def _compiled(fn):
    return torch.compile(fn, dynamic=False)


def bernoulli(shape, dtype, device) -> Case:
    n, d = shape
    g = torch.Generator(device=device).manual_seed(0)
    logits = torch.randn(n, d, generator=g, device=device).to(dtype).requires_grad_()
    x = torch.rand(n, d, generator=g, device=device).to(dtype)

    def example(logits, x):
        # The PyTorch VAE example's BCE, kept per datapoint.
        return -F.binary_cross_entropy(torch.sigmoid(logits), x, reduction="none").sum(-1)

    def distributions(logits, x):
        return Bernoulli(logits=logits).log_prob(x).sum(-1)

    providers = {f"aevb_fast[{b}]": (lambda b=b: (aevb_fast.bernoulli_log_prob(logits, x, backend=b),))
                 for b in fused_backends(device)}
    compiled = _compiled(R.bernoulli_log_prob)
    providers |= {
        "eager": lambda: (R.bernoulli_log_prob(logits, x),),
        "torch.compile": lambda: (compiled(logits, x),),
        "pytorch example": lambda: (example(logits, x),),
        "torch.distributions": lambda: (distributions(logits, x),),
    }
    e, ex = logits.element_size(), x.element_size()
    # Essential: logits and x in, the logits' gradient out. The kernels: the forward reads logits and
    # x and writes the gradient, the backward reads it and writes it scaled.
    return Case("bernoulli", shape, dtype, device, providers, [logits], (torch.randn(n, generator=g, device=device),),
                n * d * (2 * e + ex), n * d * (4 * e + ex))


def gaussian(shape, dtype, device) -> Case:
    n, d = shape
    g = torch.Generator(device=device).manual_seed(0)
    mean = torch.rand(n, d, generator=g, device=device).to(dtype).requires_grad_()
    logvar = (torch.randn(n, d, generator=g, device=device) * 0.5).to(dtype).requires_grad_()
    x = torch.rand(n, d, generator=g, device=device).to(dtype)

    def distributions(mean, logvar, x):
        return Normal(mean, torch.exp(0.5 * logvar)).log_prob(x).sum(-1)

    providers = {f"aevb_fast[{b}]": (lambda b=b: (aevb_fast.gaussian_log_prob(x, mean, logvar, backend=b),))
                 for b in fused_backends(device)}
    compiled = _compiled(R.gaussian_log_prob)
    providers |= {
        "eager": lambda: (R.gaussian_log_prob(x, mean, logvar),),
        "torch.compile": lambda: (compiled(x, mean, logvar),),
        "torch.distributions": lambda: (distributions(mean, logvar, x),),
    }
    e = mean.element_size()
    # Essential: x, mean and logvar in, two gradients out. The kernels: the forward reads three and
    # writes two gradients, the backward reads and writes both.
    return Case("gaussian", shape, dtype, device, providers, [mean, logvar],
                (torch.randn(n, generator=g, device=device),), n * d * 5 * e, n * d * 9 * e)


def reparameterize(shape, dtype, device) -> Case:
    b, z = shape
    g = torch.Generator(device=device).manual_seed(0)
    mu = torch.randn(b, z, generator=g, device=device).to(dtype).requires_grad_()
    logvar = (torch.randn(b, z, generator=g, device=device) * 0.5).to(dtype).requires_grad_()

    def reference(mu, logvar):
        return R.reparameterize(mu, logvar, torch.randn_like(mu)), R.gaussian_kl(mu, logvar)

    def example(mu, logvar):
        # The PyTorch VAE example's reparameterize and KLD, kept per datapoint.
        std = torch.exp(0.5 * logvar)
        eps = torch.randn_like(std)
        return mu + eps * std, -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), -1)

    def distributions(mu, logvar):
        q = Normal(mu, torch.exp(0.5 * logvar))
        return q.rsample(), kl_divergence(q, Normal(torch.zeros_like(mu), torch.ones_like(mu))).sum(-1)

    providers = {f"aevb_fast[{name}]": (lambda name=name: aevb_fast.reparameterize_kl(mu, logvar, backend=name))
                 for name in fused_backends(device)}
    compiled = _compiled(reference)
    providers |= {
        "eager": lambda: reference(mu, logvar),
        "torch.compile": lambda: compiled(mu, logvar),
        "pytorch example": lambda: example(mu, logvar),
        "torch.distributions": lambda: distributions(mu, logvar),
    }
    upstream = (torch.randn(b, z, generator=g, device=device).to(dtype), torch.randn(b, generator=g, device=device))
    e = mu.element_size()
    # Essential: mu, logvar and the gradient of z in, z and two gradients out. The kernels: the
    # forward reads mu, logvar and writes z, the backward reads all three again and writes two.
    return Case("reparameterize", shape, dtype, device, providers, [mu, logvar], upstream, b * z * 6 * e, b * z * 8 * e)


def _head(op, shape, dtype, device, n_layers, fused, likelihood) -> Case:
    """A decoder head with n_layers output layers [D, H] on h [N, H]: fused(h, params, x, backend) is
    the fused head, likelihood(values, x) the per-row likelihood of the layers' outputs."""
    n, h_dim, d = shape
    g = torch.Generator(device=device).manual_seed(0)
    h = torch.tanh(torch.randn(n, h_dim, generator=g, device=device)).to(dtype).requires_grad_()
    params = []
    for _ in range(n_layers):
        params.append((torch.randn(d, h_dim, generator=g, device=device) / h_dim ** 0.5).to(dtype).requires_grad_())
        params.append(torch.zeros(d, device=device, dtype=dtype).requires_grad_())
    x = torch.rand(n, d, generator=g, device=device).to(dtype)

    def layers(h):
        return [F.linear(h, params[2 * i], params[2 * i + 1]) for i in range(n_layers)]

    def eager(h, x):
        return likelihood(layers(h), x, None).sum()

    compiled = _compiled(eager)
    backends = fused_backends(device)
    providers = {f"aevb_fast[{b}]": (lambda b=b: (fused(h, params, x, b),)) for b in backends}
    providers |= {f"Linear + aevb_fast[{b}]": (lambda b=b: (likelihood(layers(h), x, b).sum(),)) for b in backends[:1]}
    providers |= {"eager": lambda: (eager(h, x),), "torch.compile": lambda: (compiled(h, x),)}
    e, ex = h.element_size(), x.element_size()
    # Essential: h, the layers and x in, their gradients out. The fused kernels add each chunk's
    # outputs and their gradient, written and read once, in cache-sized pieces.
    essential = 2 * (n * h_dim + n_layers * d * (h_dim + 1)) * e + n * d * ex
    return Case(op, shape, dtype, device, providers, [h, *params], (torch.ones((), device=device),), essential,
                essential + n_layers * n * d * 4 * e)


def bernoulli_head(shape, dtype, device) -> Case:
    def likelihood(values, x, backend):
        (logits,) = values
        return R.bernoulli_log_prob(logits, x) if backend is None else aevb_fast.bernoulli_log_prob(logits, x,
                                                                                                    backend=backend)

    return _head("bernoulli_head", shape, dtype, device, 1,
                 lambda h, p, x, b: aevb_fast.linear_bernoulli_log_prob(h, *p, x, "sum", backend=b), likelihood)


def gaussian_head(shape, dtype, device) -> Case:
    # The paper's Frey Face decoder: a sigmoid mean.
    def likelihood(values, x, backend):
        mean, logvar = torch.sigmoid(values[0]), values[1]
        return R.gaussian_log_prob(x, mean, logvar) if backend is None else aevb_fast.gaussian_log_prob(
            x, mean, logvar, backend=backend)

    return _head("gaussian_head", shape, dtype, device, 2,
                 lambda h, p, x, b: aevb_fast.linear_gaussian_log_prob(h, *p, x, "sum", mean_activation="sigmoid",
                                                                       backend=b), likelihood)


BUILDERS = {"bernoulli": bernoulli, "gaussian": gaussian, "reparameterize": reparameterize,
            "bernoulli_head": bernoulli_head, "gaussian_head": gaussian_head}


def cases(device: torch.device, dtype: torch.dtype, sizes: dict = SIZES, ops=OPS):
    """Every Case for `ops` at `sizes`, built one at a time (the large ones hold gigabytes)."""
    for op in ops:
        for shape in sizes[op]:
            yield BUILDERS[op](shape, dtype, device)

