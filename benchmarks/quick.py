"""Quick CPU check of the fused kernels against the eager reference, forward + backward.

    python benchmarks/quick.py [--repeats 7]

Prints, per case, the median wall time of aevb_fast (backend cpu) and of the plain PyTorch
reference (aevb_fast.reference), timed interleaved (A B A B ...) after a warm-up so machine noise
cancels in the ratio, and a same-size tensor copy as the memory-bound yardstick.
"""

import argparse
import statistics
import time

import torch

import aevb_fast
from aevb_fast import reference as R


def bernoulli_case(n=4096, d=12288):
    logits, x = torch.randn(n, d).requires_grad_(), torch.rand(n, d)

    def fused():
        aevb_fast.bernoulli_log_prob(logits, x, "sum", backend="cpu").backward()

    def eager():
        R.bernoulli_log_prob(logits, x).sum().backward()

    return f"Bernoulli log-likelihood [{n}, {d}]", fused, eager, [logits]


def reparameterize_case(b=65536, z=256):
    mu, logvar = torch.randn(b, z).requires_grad_(), torch.randn(b, z).requires_grad_()

    def fused():
        sample, kl = aevb_fast.reparameterize_kl(mu, logvar, backend="cpu")
        (sample.sum() + kl.sum()).backward()

    def eager():
        eps = torch.randn_like(mu)
        (R.reparameterize(mu, logvar, eps).sum() + R.gaussian_kl(mu, logvar).sum()).backward()

    return f"reparameterize + KL [{b}, {z}]", fused, eager, [mu, logvar]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32, forward + backward, "
          f"median of {args.repeats}")
    print("| case | aevb_fast (ms) | eager reference (ms) | speed-up | copy (ms) |")
    print("|---|---|---|---|---|")
    for name, fused, eager, leaves in (bernoulli_case(), reparameterize_case()):
        def copy():
            leaves[0].detach().clone()

        times = {fused: [], eager: [], copy: []}
        for fn in times:
            fn()
        for _ in range(args.repeats):
            for fn in times:
                for leaf in leaves:
                    leaf.grad = None
                start = time.perf_counter()
                fn()
                times[fn].append(time.perf_counter() - start)
        f, e, c = (statistics.median(times[fn]) * 1e3 for fn in (fused, eager, copy))
        print(f"| {name} | {f:.1f} | {e:.1f} | {e / f:.2f}x | {c:.1f} |")


if __name__ == "__main__":
    main()
