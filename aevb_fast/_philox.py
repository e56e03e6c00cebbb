"""Philox4x32-10 and its normal transform in plain torch integer ops, as the kernels compute them
(csrc/common/philox.h, Triton's tl.randn): the torch backend draws the kernels' noise, so falling
back to it never changes a result. Each counter's words are bit-identical to the kernels'; the
normal is the same Box-Muller step on the same float32 uniforms, with torch's log and cos (the
kernels use their own, within a few float32 ulps of it).

uint32 words are held in int64 tensors. A 32 x 32-bit product may pass 2^63, where int64
multiplication wraps: the wrapped result keeps the product's low 64 bits, so its high and low words
are read from it as they are."""

import torch

_MASK = 0xFFFFFFFF
_ROUND_A, _ROUND_B = 0xD2511F53, 0xCD9E8D57
_KEY_A, _KEY_B = 0x9E3779B9, 0xBB67AE85


def philox_words(seed, offsets: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The four words of Philox4x32-10 at counters (offset low, offset high, 0, 0) under the key
    (seed low, seed high), for int64 offsets >= 0 and an int or int64 tensor seed: each an int64
    tensor of uint32 values."""
    c0, c1 = offsets & _MASK, offsets >> 32
    k0, k1 = seed & _MASK, seed >> 32
    # The first round's c2 = c3 = 0: its second product is 0.
    p0 = c0 * _ROUND_A
    c0, c1, c2, c3 = c1 ^ k0, torch.zeros_like(c1), ((p0 >> 32) & _MASK) ^ k1, p0 & _MASK
    for _ in range(9):
        k0, k1 = (k0 + _KEY_A) & _MASK, (k1 + _KEY_B) & _MASK
        p0, p2 = c0 * _ROUND_A, c2 * _ROUND_B
        c0, c1, c2, c3 = ((p2 >> 32) & _MASK) ^ c1 ^ k0, p2 & _MASK, ((p0 >> 32) & _MASK) ^ c3 ^ k1, p0 & _MASK
    return c0, c1, c2, c3


def _uniform(word: torch.Tensor) -> torch.Tensor:
    """tl.rand's map of a word to [0, 1): read as int32 x, (x < 0 ? ~x : x) * 4.6566127342e-10."""
    magnitude = torch.where(word < 2**31, word, _MASK - word)  # ~x of a negative int32 x
    return magnitude.to(torch.float32) * torch.tensor(4.6566127342e-10, dtype=torch.float32)


def philox_normal(seed: int, offsets: torch.Tensor) -> torch.Tensor:
    """randn(seed, offset) float32 for each offset: Box-Muller on the first two words,
    sqrt(-2 log max(u1, 1e-7)) cos(2 pi u2), in float32."""
    w0, w1, _, _ = philox_words(seed, offsets)
    u1 = _uniform(w0).clamp_min(1.0e-7)
    theta = torch.tensor(6.283185307179586, dtype=torch.float32) * _uniform(w1)
    return torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(theta)
