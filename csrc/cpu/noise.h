// Blocks of Philox normals for the CPU kernels (the generator contract is csrc/common/philox.h).
#pragma once

#include <cmath>
#include <cstdint>

#include "../common/philox.h"
#include "vmath.h"

namespace aevb::cpu {

// out[i] = randn(seed, offset + i), i < n. Inlined into each AEVB_SIMD caller so it vectorizes.
inline void normal_block(uint64_t seed, uint64_t offset, int64_t n, float* out) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    uint32_t w0, w1;
    philox_pair(seed, offset + static_cast<uint64_t>(i), w0, w1);
    out[i] = normal_from_words(
        w0, w1, [](float u) { return vlog(u); }, [](float x) { return vcos(x); },
        [](float x) { return std::sqrt(x); });
  }
}

}  // namespace aevb::cpu
