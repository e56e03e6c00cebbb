// The fused CPU kernels. Torch-free: raw pointers to contiguous row-major buffers, int64 sizes,
// dtype codes (dtype.h) and the thread count to use.
#pragma once

#include <cstdint>

#include "dtype.h"

namespace aevb::cpu {

// The kernels of csrc/common/kernel_list.h, run with `threads` threads (torch's count).
#define AEVB_KERNEL(ret, name, ...) ret name(__VA_ARGS__, int threads);
#include "../common/kernel_list.h"
#undef AEVB_KERNEL

// CPU only:

// One Adagrad step of n parameters (lr_decay = 0), denormals flushed to zero (adagrad.cpp):
// g = grad + weight_decay * param, sum += g^2, param -= lr * g / (sqrt(sum) + eps). float32 or float64.
void adagrad_step(DType t, void* param, const void* grad, void* sum, int64_t n, double lr, double weight_decay,
                  double eps, int threads);

// The four Philox4x32-10 words at counters offset .. offset + n - 1, key seed: out[4 * i + k].
void philox_words(uint64_t seed, uint64_t offset, int64_t n, uint32_t* out);

// randn(seed, offset + i) for i < n, as tl.randn computes it.
void philox_normal(uint64_t seed, uint64_t offset, int64_t n, float* out);

// The clone the loader picked for this CPU: "x86-64-v4", "x86-64-v3" or "default".
const char* simd_level();

}  // namespace aevb::cpu
