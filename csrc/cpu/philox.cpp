// The raw generator, exposed for the tests that pin it to Triton's and to the published
// Philox4x32-10 vectors, and for drawing the kernels' noise on its own.
#include "../common/philox.h"

#include <cstdint>

#include "kernels.h"
#include "noise.h"
#include "parallel.h"

namespace aevb::cpu {

void philox_words(uint64_t seed, uint64_t offset, int64_t n, uint32_t* out) {
  for (int64_t i = 0; i < n; ++i)
    philox_at(seed, offset + static_cast<uint64_t>(i), out[4 * i], out[4 * i + 1], out[4 * i + 2], out[4 * i + 3]);
}

void philox_normal(uint64_t seed, uint64_t offset, int64_t n, float* out) {
  for_each_chunk(1, n, 1, [&](int64_t, int64_t begin, int64_t end) {
    normal_block(seed, offset + static_cast<uint64_t>(begin), end - begin, out + begin);
  });
}

const char* simd_level() {
#if defined(__x86_64__) && !defined(__clang__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("x86-64-v4")) return "x86-64-v4";
  if (__builtin_cpu_supports("x86-64-v3")) return "x86-64-v3";
#endif
  return "default";
}

}  // namespace aevb::cpu
