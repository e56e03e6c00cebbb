"""What is measured: each fused op at each size, by every provider a user could pick instead.

A provider turns the op's inputs into its outputs with one implementation:
  aevb_fast[<backend>]  the fused kernels (every kernel backend usable on the device)
  eager                 the plain PyTorch reference, aevb_fast.reference
  torch.compile         torch.compile of that reference
  F.bce_with_logits     the Bernoulli term as PyTorch users write it from logits,
                        -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
  pytorch example       the hand-written code of the PyTorch VAE example (sigmoid + BCE, KLD)
  torch.distributions   Normal.rsample, kl_divergence, Bernoulli(logits=...).log_prob,
                        ContinuousBernoulli(logits=...).log_prob (and "+ compile", compiled)

Every provider returns per-datapoint values (and z), so the backward of each is driven by the same
upstream gradients. A Case holds the inputs, the providers and the op's memory traffic.

vae_loss is the PyTorch VAE example's loss, Bernoulli + KL summed over the batch ([N, D] decoder
logits and data, [N, Z] mu and logvar), the example's loss_function taking the sigmoid its decoder
applies. The decoder heads (bernoulli_head, gaussian_head: the decoder's output layer and its
likelihood, [N, H] -> D) return the summed log-likelihood, a training loss; there "eager" is
nn.functional.linear followed by the reference likelihood, "Linear + aevb_fast[...]" the same layer
followed by the fused likelihood kernel, and aevb_fast[...] the fused head
(aevb_fast.linear_*_log_prob).

FUNCTIONS names every public fused function with the case that calls it, for the per-call overhead.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.distributions import Bernoulli, ContinuousBernoulli, Normal, kl_divergence

import aevb_fast
from aevb_fast import reference as R
from aevb_fast.ops import backends

# op: {size: shape}. "paper" is the paper's minibatch, 100 datapoints of 784 pixels (Frey Face: 560)
# with up to 200 latents; "large" a wide decoder ([4096, 12288]) and a big latent batch
# ([65536, 256]); "tiny" shapes that check the machinery in seconds. vae_loss's shape is (N, D, Z),
# the heads' (N, H, D): the paper's decoder layer at its minibatch and a wide decoder at a large one.
SIZES = {
    "bernoulli": {"tiny": (64, 300), "paper": (100, 784), "medium": (1000, 784), "large": (4096, 12288)},
    "gaussian": {"tiny": (64, 300), "paper": (100, 560), "medium": (1000, 784), "large": (4096, 12288)},
    "reparameterize": {"tiny": (128, 20), "paper": (100, 20), "medium": (1000, 200), "large": (65536, 256)},
    "vae_loss": {
        "tiny": (64, 300, 20),
        "paper": (100, 784, 20),
        "medium": (1000, 784, 20),
        "large": (4096, 12288, 256),
    },
    "bernoulli_head": {"tiny": (64, 16, 300), "paper": (100, 500, 784), "large": (8192, 500, 12288)},
    "gaussian_head": {"tiny": (64, 16, 300), "paper": (100, 200, 560), "large": (8192, 500, 12288)},
}
OPS = tuple(SIZES)
# "full" is these; "tiny" stands apart, a dry run.
SIZE_NAMES = ("paper", "medium", "large")
# The PyTorch VAE example's minibatch (its --batch-size default) for vae_loss's per-call cost.
EXAMPLE_SHAPE = (128, 784, 20)


def size_names(names) -> set[str]:
    """The size names asked for, "full" standing for paper, medium and large."""
    return {n for name in names for n in (SIZE_NAMES if name == "full" else (name,))}


def shapes(op: str, names) -> list[tuple[str, tuple[int, ...]]]:
    """(size name, shape) of `op` for the size names asked for, in the order tiny, paper, medium,
    large; an op without a size (the heads' medium) skips it."""
    wanted = size_names(names)
    return [(name, shape) for name, shape in SIZES[op].items() if name in wanted]


def dims(op: str, shape: tuple[int, ...]) -> str:
    """The shape as tables show it: [N, D], vae_loss's [N, D] + [N, Z], a head's [N, H] -> D."""
    if op == "vae_loss":
        n, d, z = shape
        return f"[{n}, {d}] + [{n}, {z}]"
    rows = f"[{shape[0]}, {shape[1]}]"
    return rows if len(shape) == 2 else f"{rows} -> {shape[2]}"


@dataclass
class Case:
    op: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    device: torch.device
    providers: dict[str, Callable[[], tuple[torch.Tensor, ...]]]
    leaves: list[torch.Tensor]  # inputs that take gradients
    upstream: tuple[torch.Tensor, ...]  # gradients of the outputs, the same for every provider
    # The least any implementation moves in forward + backward: each input read once, each output
    # and gradient written once. Effective bandwidth is this over the time taken.
    essential_bytes: int
    # What the fused kernels themselves read and write in forward + backward; at a warm copy's
    # bandwidth this takes the memory limit of their time.
    kernel_bytes: int
    # The op's largest input: a warm copy of it gives the bandwidth of that limit.
    copy_source: torch.Tensor

    @property
    def label(self) -> str:
        return f"{self.op} {dims(self.op, self.shape)}"


def fused_backends(device: torch.device) -> list[str]:
    """The kernel backends to measure on `device`: those auto may pick (Triton's interpreter is for
    tests, not for timing)."""
    return [b for b in backends.usable(device.type) if b in backends.AUTO.get(device.type, ())]


def _compiled(fn):
    return torch.compile(fn, dynamic=False)


def _fused(device, call) -> dict[str, Callable]:
    """A provider per fused backend: call(backend) runs the op on it."""
    return {f"aevb_fast[{b}]": (lambda b=b: call(b)) for b in fused_backends(device)}


def _example_kld(mu, logvar, dim=None):
    """The PyTorch VAE example's KLD, summed over the batch (dim=None) or per datapoint (dim=-1)."""
    terms = 1 + logvar - mu.pow(2) - logvar.exp()
    return -0.5 * (torch.sum(terms) if dim is None else torch.sum(terms, dim))


def _gaussian_params(b, z, dtype, device, g):
    mu = torch.randn(b, z, generator=g, device=device).to(dtype).requires_grad_()
    logvar = (torch.randn(b, z, generator=g, device=device) * 0.5).to(dtype).requires_grad_()
    return mu, logvar


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

    compiled = _compiled(R.bernoulli_log_prob)
    providers = _fused(device, lambda b: (aevb_fast.bernoulli_log_prob(logits, x, backend=b),)) | {
        "eager": lambda: (R.bernoulli_log_prob(logits, x),),
        "torch.compile": lambda: (compiled(logits, x),),
        "F.bce_with_logits": lambda: (-F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1),),
        "pytorch example": lambda: (example(logits, x),),
        "torch.distributions": lambda: (distributions(logits, x),),
    }
    e, ex = logits.element_size(), x.element_size()
    # Essential: logits and x in, the logits' gradient out. The kernels: the forward reads logits and
    # x, the backward reads both again and writes the gradient.
    return Case(
        "bernoulli",
        shape,
        dtype,
        device,
        providers,
        [logits],
        (torch.randn(n, generator=g, device=device),),
        n * d * (2 * e + ex),
        n * d * (3 * e + 2 * ex),
        logits,
    )


def gaussian(shape, dtype, device) -> Case:
    n, d = shape
    g = torch.Generator(device=device).manual_seed(0)
    mean = torch.rand(n, d, generator=g, device=device).to(dtype).requires_grad_()
    logvar = (torch.randn(n, d, generator=g, device=device) * 0.5).to(dtype).requires_grad_()
    x = torch.rand(n, d, generator=g, device=device).to(dtype)

    def distributions(mean, logvar, x):
        return Normal(mean, torch.exp(0.5 * logvar)).log_prob(x).sum(-1)

    compiled = _compiled(R.gaussian_log_prob)
    providers = _fused(device, lambda b: (aevb_fast.gaussian_log_prob(x, mean, logvar, backend=b),)) | {
        "eager": lambda: (R.gaussian_log_prob(x, mean, logvar),),
        "torch.compile": lambda: (compiled(x, mean, logvar),),
        "torch.distributions": lambda: (distributions(mean, logvar, x),),
    }
    e = mean.element_size()
    # Essential: x, mean and logvar in, two gradients out. The kernels: the forward reads the three,
    # the backward reads them again and writes both gradients.
    return Case(
        "gaussian",
        shape,
        dtype,
        device,
        providers,
        [mean, logvar],
        (torch.randn(n, generator=g, device=device),),
        n * d * 5 * e,
        n * d * 8 * e,
        mean,
    )


def reparameterize(shape, dtype, device) -> Case:
    """reparameterize_kl: z and the analytic KL in one pass."""
    b, z = shape
    g = torch.Generator(device=device).manual_seed(0)
    mu, logvar = _gaussian_params(b, z, dtype, device, g)

    def reference(mu, logvar):
        return R.reparameterize(mu, logvar, torch.randn_like(mu)), R.gaussian_kl(mu, logvar)

    def example(mu, logvar):
        # The PyTorch VAE example's reparameterize and KLD, kept per datapoint.
        std = torch.exp(0.5 * logvar)
        eps = torch.randn_like(std)
        return mu + eps * std, _example_kld(mu, logvar, -1)

    def distributions(mu, logvar):
        q = Normal(mu, torch.exp(0.5 * logvar))
        return q.rsample(), kl_divergence(q, Normal(torch.zeros_like(mu), torch.ones_like(mu))).sum(-1)

    compiled = _compiled(reference)
    providers = _fused(device, lambda name: aevb_fast.reparameterize_kl(mu, logvar, backend=name)) | {
        "eager": lambda: reference(mu, logvar),
        "torch.compile": lambda: compiled(mu, logvar),
        "pytorch example": lambda: example(mu, logvar),
        "torch.distributions": lambda: distributions(mu, logvar),
    }
    upstream = (torch.randn(b, z, generator=g, device=device).to(dtype), torch.randn(b, generator=g, device=device))
    e = mu.element_size()
    # Essential: mu, logvar and the gradient of z in, z and two gradients out. The kernels: the
    # forward reads mu, logvar and writes z, the backward reads all three again and writes two.
    return Case(
        "reparameterize", shape, dtype, device, providers, [mu, logvar], upstream, b * z * 6 * e, b * z * 8 * e, mu
    )


def vae_loss(shape, dtype, device) -> Case:
    n, d, z = shape
    g = torch.Generator(device=device).manual_seed(0)
    logits = torch.randn(n, d, generator=g, device=device).to(dtype).requires_grad_()
    x = torch.rand(n, d, generator=g, device=device).to(dtype)
    mu, logvar = _gaussian_params(n, z, dtype, device, g)

    def reference(logits, x, mu, logvar):
        return -(R.bernoulli_log_prob(logits, x) - R.gaussian_kl(mu, logvar)).sum()

    def loss_function(recon_x, x, mu, logvar):
        # The PyTorch VAE example's, as it stands in vae/main.py.
        BCE = F.binary_cross_entropy(recon_x, x.view(-1, d), reduction="sum")
        return BCE + _example_kld(mu, logvar)

    compiled = _compiled(reference)
    providers = _fused(device, lambda b: (aevb_fast.vae_loss(logits, x, mu, logvar, reduction="sum", backend=b),)) | {
        "eager": lambda: (reference(logits, x, mu, logvar),),
        "torch.compile": lambda: (compiled(logits, x, mu, logvar),),
        "F.bce_with_logits": lambda: (
            F.binary_cross_entropy_with_logits(logits, x, reduction="sum") + _example_kld(mu, logvar),
        ),
        "pytorch example": lambda: (loss_function(torch.sigmoid(logits), x, mu, logvar),),
    }
    e, ex = logits.element_size(), x.element_size()
    # Essential: logits, x, mu and logvar in, three gradients out. The kernels: the likelihood's as
    # in bernoulli, and the KL's forward reads mu and logvar, its backward reads them and writes two.
    return Case(
        "vae_loss",
        shape,
        dtype,
        device,
        providers,
        [logits, mu, logvar],
        (torch.ones((), device=device),),
        n * d * (2 * e + ex) + n * z * 4 * e,
        n * d * (3 * e + 2 * ex) + n * z * 6 * e,
        logits,
    )


def _head(op, shape, dtype, device, n_layers, fused, likelihood) -> Case:
    """A decoder head with n_layers output layers [D, H] on h [N, H]: fused(h, params, x, backend) is
    the fused head, likelihood(values, x) the per-row likelihood of the layers' outputs."""
    n, h_dim, d = shape
    g = torch.Generator(device=device).manual_seed(0)
    h = torch.tanh(torch.randn(n, h_dim, generator=g, device=device)).to(dtype).requires_grad_()
    params = []
    for _ in range(n_layers):
        params.append((torch.randn(d, h_dim, generator=g, device=device) / h_dim**0.5).to(dtype).requires_grad_())
        params.append(torch.zeros(d, device=device, dtype=dtype).requires_grad_())
    x = torch.rand(n, d, generator=g, device=device).to(dtype)

    def layers(h):
        return [F.linear(h, params[2 * i], params[2 * i + 1]) for i in range(n_layers)]

    def eager(h, x):
        return likelihood(layers(h), x, None).sum()

    compiled = _compiled(eager)
    providers = _fused(device, lambda b: (fused(h, params, x, b),))
    providers |= {
        f"Linear + aevb_fast[{b}]": (lambda b=b: (likelihood(layers(h), x, b).sum(),))
        for b in fused_backends(device)[:1]
    }
    providers |= {"eager": lambda: (eager(h, x),), "torch.compile": lambda: (compiled(h, x),)}
    e, ex = h.element_size(), x.element_size()
    # Essential: h, the layers and x in, their gradients out. The fused kernels add each chunk's
    # outputs and their gradient, written and read once, in cache-sized pieces.
    essential = 2 * (n * h_dim + n_layers * d * (h_dim + 1)) * e + n * d * ex
    return Case(
        op,
        shape,
        dtype,
        device,
        providers,
        [h, *params],
        (torch.ones((), device=device),),
        essential,
        essential + n_layers * n * d * 4 * e,
        x,
    )


def bernoulli_head(shape, dtype, device) -> Case:
    def likelihood(values, x, backend):
        (logits,) = values
        return (
            R.bernoulli_log_prob(logits, x)
            if backend is None
            else aevb_fast.bernoulli_log_prob(logits, x, backend=backend)
        )

    return _head(
        "bernoulli_head",
        shape,
        dtype,
        device,
        1,
        lambda h, p, x, b: aevb_fast.linear_bernoulli_log_prob(h, *p, x, "sum", backend=b),
        likelihood,
    )


def gaussian_head(shape, dtype, device) -> Case:
    # The paper's Frey Face decoder: a sigmoid mean.
    def likelihood(values, x, backend):
        mean, logvar = torch.sigmoid(values[0]), values[1]
        return (
            R.gaussian_log_prob(x, mean, logvar)
            if backend is None
            else aevb_fast.gaussian_log_prob(x, mean, logvar, backend=backend)
        )

    return _head(
        "gaussian_head",
        shape,
        dtype,
        device,
        2,
        lambda h, p, x, b: aevb_fast.linear_gaussian_log_prob(h, *p, x, "sum", mean_activation="sigmoid", backend=b),
        likelihood,
    )


# The public functions that share a kernel with a case, measured for their per-call cost only.


def reparameterize_z(shape, dtype, device) -> Case:
    """reparameterize: z alone."""
    b, z = shape
    g = torch.Generator(device=device).manual_seed(0)
    mu, logvar = _gaussian_params(b, z, dtype, device, g)

    def example(mu, logvar):
        std = torch.exp(0.5 * logvar)
        return mu + torch.randn_like(std) * std

    e = mu.element_size()
    return Case(
        "reparameterize_z",
        shape,
        dtype,
        device,
        _fused(device, lambda name: (aevb_fast.reparameterize(mu, logvar, backend=name),))
        | {
            "eager": lambda: (R.reparameterize(mu, logvar, torch.randn_like(mu)),),
            "pytorch example": lambda: (example(mu, logvar),),
        },
        [mu, logvar],
        (torch.randn(b, z, generator=g, device=device).to(dtype),),
        b * z * 6 * e,
        b * z * 8 * e,
        mu,
    )


def gaussian_kl(shape, dtype, device) -> Case:
    b, z = shape
    g = torch.Generator(device=device).manual_seed(0)
    mu, logvar = _gaussian_params(b, z, dtype, device, g)
    e = mu.element_size()
    return Case(
        "gaussian_kl",
        shape,
        dtype,
        device,
        _fused(device, lambda name: (aevb_fast.gaussian_kl(mu, logvar, backend=name),))
        | {"eager": lambda: (R.gaussian_kl(mu, logvar),), "pytorch example": lambda: (_example_kld(mu, logvar, -1),)},
        [mu, logvar],
        (torch.randn(b, generator=g, device=device),),
        b * z * 4 * e,
        b * z * 6 * e,
        mu,
    )


def elbo_loss(shape, dtype, device) -> Case:
    """elbo_loss with the identity for decoder: the data are Z-dimensional, [N, Z]."""
    b, z = shape
    g = torch.Generator(device=device).manual_seed(0)
    mu, logvar = _gaussian_params(b, z, dtype, device, g)
    x = torch.rand(b, z, generator=g, device=device).to(dtype)

    def reference(mu, logvar):
        samples = R.reparameterize(mu, logvar, torch.randn_like(mu))
        return (R.gaussian_kl(mu, logvar) - R.bernoulli_log_prob(samples, x)).mean()

    e = mu.element_size()
    return Case(
        "elbo_loss",
        shape,
        dtype,
        device,
        _fused(device, lambda name: (aevb_fast.elbo_loss(lambda s: s, x, mu, logvar, backend=name),))
        | {"eager": lambda: (reference(mu, logvar),)},
        [mu, logvar],
        (torch.ones((), device=device),),
        b * z * 5 * e,
        b * z * 13 * e,
        mu,
    )


BUILDERS = {
    "bernoulli": bernoulli,
    "gaussian": gaussian,
    "reparameterize": reparameterize,
    "vae_loss": vae_loss,
    "bernoulli_head": bernoulli_head,
    "gaussian_head": gaussian_head,
}
# Every public fused function: the builder of a case that calls it, and its shape at one element.
FUNCTIONS = {
    "bernoulli_log_prob": (bernoulli, (1, 1)),
    "gaussian_log_prob": (gaussian, (1, 1)),
    "reparameterize": (reparameterize_z, (1, 1)),
    "reparameterize_kl": (reparameterize, (1, 1)),
    "gaussian_kl": (gaussian_kl, (1, 1)),
    "vae_loss": (vae_loss, (1, 1, 1)),
    "elbo_loss": (elbo_loss, (1, 1)),
    "linear_bernoulli_log_prob": (bernoulli_head, (1, 1, 1)),
    "linear_gaussian_log_prob": (gaussian_head, (1, 1, 1)),
}


# What users of a likelihood write instead of the reference, where a library has it: (values, x) ->
# log p(x|z) per row.
PEERS = {
    "continuous_bernoulli": {
        "torch.distributions": lambda values, x: ContinuousBernoulli(logits=values[0]).log_prob(x).sum(-1),
    },
}


def _likelihood(name: str):
    """The case of a likelihood of the registry that has none written for it above: its fused
    function against the reference, eager and compiled (values N(0, 1), log scales N(0, 0.25))."""
    entry = aevb_fast.LIKELIHOODS[name]

    def build(shape, dtype, device) -> Case:
        n, d = shape
        g = torch.Generator(device=device).manual_seed(0)
        values = [
            (torch.randn(entry.value_shape((n, d)), generator=g, device=device) * (0.5 if i else 1.0))
            .to(dtype)
            .requires_grad_()
            for i, _ in enumerate(entry.params)
        ]
        x = torch.rand(n, d, generator=g, device=device).to(dtype)
        compiled = _compiled(lambda x, *v: entry.reference(v, x))
        providers = _fused(device, lambda b: (entry.log_prob(values, x, backend=b),)) | {
            "eager": lambda: (entry.reference(values, x),),
            "torch.compile": lambda: (compiled(x, *values),),
        }
        for peer, fn in PEERS.get(name, {}).items():
            peer_compiled = _compiled(fn)
            providers[peer] = lambda fn=fn: (fn(values, x),)
            providers[f"{peer} + compile"] = lambda fn=peer_compiled: (fn(values, x),)
        k, e = len(values) * (entry.components or 1), x.element_size()
        # Essential: the values and x in, the values' gradients out. The kernels: the forward reads
        # them all, the backward reads them again and writes the gradients.
        return Case(
            name,
            shape,
            dtype,
            device,
            providers,
            values,
            (torch.randn(n, generator=g, device=device),),
            n * d * (2 * k + 1) * e,
            n * d * (3 * k + 2) * e,
            values[0],
        )

    return build


def _likelihood_head(name: str):
    """The fused head's case of a likelihood of the registry without one written above."""
    entry = aevb_fast.LIKELIHOODS[name]

    def likelihood(values, x, backend):
        # The layers' outputs through the activations of the paper's decoders, as the head applies them.
        activated = tuple(torch.sigmoid(v) if a == "sigmoid" else v for v, a in zip(values, entry.activations))
        return entry.reference(activated, x) if backend is None else entry.log_prob(activated, x, backend=backend)

    def build(shape, dtype, device) -> Case:
        return _head(
            f"{name}_head",
            shape,
            dtype,
            device,
            len(entry.params),
            lambda h, p, x, b: entry.head(h, list(zip(p[0::2], p[1::2])), x, "sum", b),
            likelihood,
        )

    return build


# A mixture's sizes: Frey Face's 560 pixels at the paper's minibatch, and a batch of 256 CIFAR-sized
# images (3072 values) of 10 components each, PixelCNN++'s.
MIXTURE_SIZES = {"tiny": (16, 300), "paper": (100, 560), "large": (256, 3072)}

for _name, _entry in aevb_fast.LIKELIHOODS.items():
    if _name in BUILDERS:
        continue
    BUILDERS[_name] = _likelihood(_name)
    FUNCTIONS[f"{_name}_log_prob"] = (BUILDERS[_name], (1, 1))
    if _entry.components is not None:  # no fused head
        SIZES[_name] = MIXTURE_SIZES
        continue
    SIZES[_name], SIZES[f"{_name}_head"] = SIZES["gaussian"], SIZES["gaussian_head"]
    BUILDERS[f"{_name}_head"] = _likelihood_head(_name)
    FUNCTIONS[f"linear_{_name}_log_prob"] = (BUILDERS[f"{_name}_head"], (1, 1, 1))
OPS = tuple(SIZES)


def cases(device: torch.device, dtype: torch.dtype, sizes=("full",), ops=OPS):
    """(size name, Case) for `ops` at the size names `sizes`, built one at a time (the large ones hold
    gigabytes)."""
    for op in ops:
        for size, shape in shapes(op, sizes):
            yield size, BUILDERS[op](shape, dtype, device)
