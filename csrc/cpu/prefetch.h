// Software prefetch for the kernels that stream their inputs through a polynomial or two per
// element (the likelihoods).
//
// Why: such a loop is compute bound while its data is in the caches; from memory, the out-of-order
// core alone does not run far enough ahead to keep enough loads in flight, and the hardware
// prefetchers stop at every 4 KiB page (a row chunk of 1024 floats is one). Requesting the lines
// 1 KiB ahead of each 64-element block, on one thread of a 2-core AVX-512 Xeon at float32
// [4096, 12288]: Bernoulli forward 41 -> 32 ms (a loop that only reads its two inputs: 27 ms),
// backward 48 -> 43 ms (a loop that reads two arrays and writes a third: 40 ms); Gaussian forward
// 51 -> 42 ms, backward 72 -> 69 ms. In the caches it costs nothing measurable, so it is not
// limited to large passes. 512 B ahead was a little slower, 2 KiB no faster; prefetching into L2
// only (T1, T2), or in addition farther ahead, was slower.
#pragma once

#include <cstdint>

namespace aevb::cpu {

constexpr int64_t kPrefetchBlock = 64;
constexpr uintptr_t kPrefetchAhead = 1024;
constexpr uintptr_t kCacheLine = 64;

// Requests the cache lines kPrefetchAhead bytes past p[0, count). A prefetch never faults, so the
// lines may lie past the end of the array.
template <typename T>
inline void prefetch_ahead(const T* p, int64_t count) {
  const uintptr_t at = reinterpret_cast<uintptr_t>(p) + kPrefetchAhead;
  for (uintptr_t offset = 0; offset < static_cast<uintptr_t>(count) * sizeof(T); offset += kCacheLine) {
    __builtin_prefetch(reinterpret_cast<const void*>(at + offset));
  }
}

// Runs body(i) for i in [0, n) (a loop for `omp simd`) in blocks of kPrefetchBlock elements, each
// first prefetching the lines ahead of the block in every stream. Full blocks run as a loop of
// constant length: with a variable one GCC broadcast the body's constants again in every block
// (7% slower in the caches). Always inlined so that the loops take the calling AEVB_SIMD function's
// ISA clone, and body, a lambda, must be marked always_inline too: a lambda is not cloned with the
// function it is written in, and where GCC left it out of line the loop ran ten times slower.
template <typename Body, typename... Streams>
[[gnu::always_inline]] inline void for_each_prefetching(int64_t n, Body&& body, const Streams*... streams) {
  int64_t b = 0;
  for (; b + kPrefetchBlock <= n; b += kPrefetchBlock) {
    (prefetch_ahead(streams + b, kPrefetchBlock), ...);
#pragma omp simd
    for (int64_t i = 0; i < kPrefetchBlock; ++i) body(b + i);
  }
#pragma omp simd
  for (int64_t i = b; i < n; ++i) body(i);
}

}  // namespace aevb::cpu
