"""Quick check of the fused kernels against the plain PyTorch reference, eager and under
torch.compile, forward + backward, with a same-size copy as the memory-bound yardstick.

    python benchmarks/quick.py [--device cpu|cuda] [--dtype float32|bfloat16] [--repeats 7] [--sizes full|tiny]

Per case it prints the median wall time of aevb_fast (the device's fused backend, or --backend),
of the reference (aevb_fast.reference) eager and under torch.compile, and of a copy of the
largest input, timed interleaved (A B C D A B C D ...) after a warm-up so that machine noise
cancels in the ratios. "limit" is the time the fused kernels' own traffic (bytes read and written
by their forward and backward passes) takes at the copy's bandwidth; aevb_fast / limit near 1 means
the kernels run at memory speed. --sizes tiny runs the same code on small shapes (a dry run).
"""

import argparse
import statistics
import time

import torch

import aevb_fast
from aevb_fast import reference as R
from aevb_fast.ops import backends

SIZES = {"full": {"bernoulli": (4096, 12288), "reparameterize": (65536, 256)},
         "tiny": {"bernoulli": (64, 300), "reparameterize": (128, 20)}}


def bernoulli_case(n, d, dtype, device, backend):
    logits = torch.randn(n, d, dtype=dtype, device=device).requires_grad_()
    x = torch.rand(n, d, device=device).to(dtype)
    grad = torch.randn(n, device=device)

    def fused():
        torch.autograd.backward(aevb_fast.bernoulli_log_prob(logits, x, backend=backend), grad)

    def reference():
        torch.autograd.backward(R.bernoulli_log_prob(logits, x).float(), grad)

    # forward: logits and x in, gradient out; backward: gradient in, scaled gradient out.
    traffic = n * d * (4 * logits.element_size() + x.element_size())
    return f"Bernoulli log-likelihood [{n}, {d}]", fused, reference, [logits], traffic


def reparameterize_case(b, z, dtype, device, backend):
    mu = torch.randn(b, z, dtype=dtype, device=device).requires_grad_()
    logvar = torch.randn(b, z, dtype=dtype, device=device).requires_grad_()
    grad_z, grad_kl = torch.randn(b, z, dtype=dtype, device=device), torch.randn(b, device=device)

    def fused():
        torch.autograd.backward(aevb_fast.reparameterize_kl(mu, logvar, backend=backend), (grad_z, grad_kl))

    def reference():
        eps = torch.randn_like(mu)
        torch.autograd.backward((R.reparameterize(mu, logvar, eps), R.gaussian_kl(mu, logvar).float()),
                                (grad_z, grad_kl))

    # forward: mu, logvar in, z out; backward: grad_z, mu, logvar in, two gradients out.
    traffic = b * z * 8 * mu.element_size()
    return f"reparameterize + KL [{b}, {z}]", fused, reference, [mu, logvar], traffic


def timed(fn, device, inner):
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(inner):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / inner


def run_case(case, device, repeats):
    name, fused, reference, leaves, traffic = case
    compiled = torch.compile(reference)

    def copy():
        leaves[0].detach().clone()

    providers = {"aevb_fast": fused, "eager": reference, "compile": compiled, "copy": copy}
    # On a GPU one call is well under a millisecond: time several per sample.
    inner = 20 if device.type == "cuda" else 1
    times = {name: [] for name in providers}
    for round_ in range(repeats + 2):  # the first two rounds warm up (and compile)
        for provider, fn in providers.items():
            for leaf in leaves:
                leaf.grad = None
            seconds = timed(fn, device, inner)
            if round_ >= 2:
                times[provider].append(seconds)
    median = {p: statistics.median(t) * 1e3 for p, t in times.items()}
    copy_bytes = 2 * leaves[0].numel() * leaves[0].element_size()
    limit = traffic / copy_bytes * median["copy"]
    return name, median, limit


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--backend", default=None, help="aevb_fast backend (default: the device's fused one)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--sizes", default="full", choices=sorted(SIZES))
    args = parser.parse_args()
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    backend = args.backend or backends.resolve("auto", device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"{where}; torch {torch.__version__}; aevb_fast backend {backend}; {args.dtype}; forward + backward; "
          f"median of {args.repeats}; {time.strftime('%Y-%m-%d')}")
    print()
    print("| case | aevb_fast (ms) | eager (ms) | torch.compile (ms) | vs eager | vs compile | copy (ms) "
          "| limit (ms) | aevb_fast / limit |")
    print("|---|---|---|---|---|---|---|---|---|")
    sizes = SIZES[args.sizes]
    for case in (bernoulli_case(*sizes["bernoulli"], dtype, device, backend),
                 reparameterize_case(*sizes["reparameterize"], dtype, device, backend)):
        name, m, limit = run_case(case, device, args.repeats)
        print(f"| {name} | {m['aevb_fast']:.3f} | {m['eager']:.3f} | {m['compile']:.3f} "
              f"| {m['eager'] / m['aevb_fast']:.2f}x | {m['compile'] / m['aevb_fast']:.2f}x | {m['copy']:.3f} "
              f"| {limit:.3f} | {m['aevb_fast'] / limit:.2f} |", flush=True)


if __name__ == "__main__":
    main()
