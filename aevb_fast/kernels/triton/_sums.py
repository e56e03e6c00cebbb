"""Compensated row sums for the forward kernels here, lane by lane (Neumaier's variant of Kahan's
summation): `total` is the plain sum, tile after tile, and `error` gathers what each addition
rounded away, exactly (Fast2Sum, larger magnitude first).

Why: on a GPU a lane of a wide row adds one term per tile (2^20 columns in tiles of 4096: 256 each)
and in plain float32 their roundings add up, to 1.6e-6 relative for 256 terms of one sign (2.2e-5
for 4096); compensated, the error stays within a few ulps, in float32 (float64 is slow on most
GPUs). Fold the error in before the cross-lane tl.sum. This needs IEEE adds in program order:
Triton does not reassociate floating-point adds (LLVM without fast-math flags; FMA contraction has
no product to fuse here), and the interpreter runs them one numpy op at a time.
"""

import triton
import triton.language as tl


@triton.jit
def compensated_add(total, error, y):
    """(total + y, error + what that addition rounded away), elementwise."""
    t = total + y
    return t, error + tl.where(tl.abs(total) >= tl.abs(y), (total - t) + y, (y - t) + total)


@triton.jit
def compensated_value(total, error):
    """The sum with its error folded in. A total that overflowed or met an infinity or NaN comes back
    as it is (its error is NaN then, from inf - inf): what plain summation gives."""
    return tl.where(tl.abs(total) < float("inf"), total + error, total)
