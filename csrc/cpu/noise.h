// Blocks of Philox normals for the CPU kernels (the generator contract is csrc/common/philox.h).
#pragma once

#include <cstdint>

namespace aevb::cpu {

// out[i] = randn(seed, offset + i) for i < n <= kChunk, as tl.randn computes it. The Philox
// rounds run on 8 (AVX2) or 16 (AVX-512) counters at once, picked for the CPU at load time.
void normal_block(uint64_t seed, uint64_t offset, int64_t n, float* out);

}  // namespace aevb::cpu
