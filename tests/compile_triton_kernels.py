"""Compiles every Triton kernel variant the launchers ask for to a GPU binary, on a machine with no
GPU: each launcher runs on small CPU tensors against a recorder standing in for its kernel, and
the recorded call is compiled with triton.compile for the target named on the command line. It
catches what the interpreter does not check: types, constexpr use and lowering to PTX/cubin.

    TRITON_INTERPRET=0 python tests/compile_triton_kernels.py [sm_90 ...]

Prints one line per compiled variant and exits non-zero on the first failure."""

import os
import sys

if os.environ.get("TRITON_INTERPRET", "0") != "0":
    sys.exit("run with TRITON_INTERPRET=0: the interpreter replaces the kernels this compiles")

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

import aevb_fast
from aevb_fast.kernels import triton as kernels
from aevb_fast.kernels.triton import reparameterize

TYPES = {
    torch.float32: "fp32",
    torch.float64: "fp64",
    torch.float16: "fp16",
    torch.bfloat16: "bf16",
    torch.uint8: "u8",
    torch.bool: "i1",
    torch.int64: "i64",
}


class Recorder:
    """Stands in for a kernel: kernel[grid](*args, **kwargs) records the call."""

    def __init__(self, kernel):
        self.kernel, self.calls = kernel, []

    def __getitem__(self, grid):
        return lambda *args, **kwargs: self.calls.append((args, kwargs))


def _type(value):
    if isinstance(value, torch.Tensor):
        return "*" + TYPES[value.dtype]
    return "i64" if abs(value) >= 2**31 else "i32"


def compile_call(kernel, args, kwargs, target):
    """triton.compile of one recorded call, specialized as a launch specializes it: pointers 16-byte
    aligned (as torch allocates) and integers divisible by 16 marked so, which is what lets the
    compiler vectorize loads."""
    options = {k: kwargs.pop(k) for k in ("num_warps", "num_stages") if k in kwargs}
    signature = {n: _type(v) for n, v in zip(kernel.arg_names, args)} | {n: "constexpr" for n in kwargs}
    attrs = {(i,): [["tt.divisibility", 16]] for i, v in enumerate(args) if isinstance(v, torch.Tensor) or v % 16 == 0}
    return triton.compile(
        ASTSource(fn=kernel, signature=signature, constexprs=dict(kwargs), attrs=attrs), target=target, options=options
    )


def variants():
    """(module, kernel name, launcher call) for every dtype and flag the ops use, on meta tensors
    (the launchers allocate their outputs; nothing runs). Each call runs before the generator
    moves on, so the lambdas see the loop's current values."""
    seed = torch.zeros(3, dtype=torch.int64, device="meta")
    for dtype in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
        row = torch.float64 if dtype == torch.float64 else torch.float32

        def zeros(*shape, dtype=dtype):
            return torch.zeros(*shape, dtype=dtype, device="meta")

        mu = zeros(3, 5)
        for n_samples, mc in ((1, False), (2, True), (0, False)):
            yield (
                reparameterize,
                "reparameterize_forward_kernel",
                lambda: reparameterize.forward(mu, mu, seed, n_samples, mc, row),
            )
        for grad_z, grad_kl, mc, stl in (
            (zeros(2, 3, 5, dtype=dtype), zeros(3, dtype=row), False, False),
            (None, zeros(2, 3, dtype=row), True, False),
            (zeros(2, 3, 5, dtype=dtype), None, True, False),
            (zeros(2, 3, 5, dtype=dtype), zeros(2, 3, dtype=row), True, True),
        ):
            yield (
                reparameterize,
                "reparameterize_backward_kernel",
                lambda: reparameterize.backward(grad_z, grad_kl, mu, mu, seed, 2, mc, stl, row),
            )
        # Targets as kernel_target hands them over: the values' dtype, float32 beside half precision,
        # uint8 or bool.
        for x_dtype in (torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype, torch.uint8, torch.bool):
            yield from _likelihood_variants(mu, zeros(3, 5, dtype=x_dtype), zeros(3, dtype=row), row)
    # The benchmark sizes, whose tiles fill 8 warps.
    for dtype in (torch.float32, torch.bfloat16):
        latent, data = (
            torch.zeros(65536, 256, dtype=dtype, device="meta"),
            torch.zeros(4096, 12288, dtype=dtype, device="meta"),
        )
        rows = torch.zeros(4096, device="meta")
        yield (
            reparameterize,
            "reparameterize_forward_kernel",
            lambda: reparameterize.forward(latent, latent, seed, 1, False, torch.float32),
        )
        yield (
            reparameterize,
            "reparameterize_backward_kernel",
            lambda: reparameterize.backward(
                latent[None], rows.new_zeros(65536), latent, latent, seed, 1, False, False, torch.float32
            ),
        )
        for x in (data.to(torch.uint8), data.float()):
            yield from _likelihood_variants(data, x, rows, torch.float32)


def _likelihood_variants(values, x, g, row):
    """The forward and backward kernels of every likelihood of the registry, on values of one shape
    and dtype and targets x, each launcher's arguments in its op's schema order."""
    for name, entry in aevb_fast.LIKELIHOODS.items():
        module = getattr(kernels, name)
        schema = getattr(torch.ops.aevb_fast, f"{name}_log_prob").default._schema
        value = values.new_zeros(entry.value_shape(values.shape))  # a mixture's components last
        args = [x if a.name == "x" else value for a in schema.arguments if a.name != "backend"]
        yield module, f"{name}_forward_kernel", lambda: module.forward(*args, row)
        yield module, f"{name}_backward_kernel", lambda: module.backward(g, *args)


def main(archs):
    targets = [GPUTarget("cuda", int(a.removeprefix("sm_")), 32) for a in archs]
    compiled = set()
    for module, name, launch in variants():
        kernel = getattr(module, name)
        # The launcher looks the kernel up in the module that defines it (a likelihood may share
        # another's kernels under its own names, as the continuous Bernoulli does).
        home, name = sys.modules[kernel.fn.__module__], kernel.fn.__name__
        recorder = Recorder(kernel)
        setattr(home, name, recorder)
        try:
            launch()
        finally:
            setattr(home, name, kernel)
        for args, kwargs in recorder.calls:
            key = (name, tuple(_type(a) for a in args), tuple(sorted(kwargs.items())))
            if key in compiled:
                continue
            compiled.add(key)
            for target in targets:
                binary = compile_call(kernel, args, dict(kwargs), target)
                print(
                    f"sm_{target.arch} {name} {' '.join(t for t in key[1] if t.startswith('*'))} "
                    f"{dict(kwargs)}: {len(binary.asm['cubin'])} bytes"
                )


if __name__ == "__main__":
    main(sys.argv[1:] or ["sm_90"])
