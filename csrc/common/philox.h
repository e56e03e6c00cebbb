// Philox4x32-10 and its normal transform, exactly as Triton's tl.randint4x / tl.randn
// (triton/language/random.py) compute them, so one (seed, offset) gives the same noise on
// every backend. Shared by the CPU and CUDA kernels; the transcendental functions of the
// Box-Muller step are left to each backend (see normal_from_words).
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define AEVB_HD __host__ __device__ __forceinline__
#else
#define AEVB_HD inline
#endif

namespace aevb {

constexpr uint32_t kPhiloxRoundA = 0xD2511F53u, kPhiloxRoundB = 0xCD9E8D57u;
constexpr uint32_t kPhiloxKeyA = 0x9E3779B9u, kPhiloxKeyB = 0xBB67AE85u;

// Counter (c0, c1, c2, c3) and key (k0, k1) in, the four output words out (in place).
AEVB_HD void philox4x32_10(uint32_t& c0, uint32_t& c1, uint32_t& c2, uint32_t& c3, uint32_t k0, uint32_t k1) {
  // Fully unrolled: a loop left in the body stops the CPU vectorizer. nvcc's host pass, which
  // takes neither pragma, has no caller of it.
#if defined(__CUDA_ARCH__)
#pragma unroll
#elif defined(__GNUC__) && !defined(__CUDACC__)
#pragma GCC unroll 10
#endif
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = static_cast<uint64_t>(kPhiloxRoundA) * c0;
    const uint64_t p2 = static_cast<uint64_t>(kPhiloxRoundB) * c2;
    const uint32_t n0 = static_cast<uint32_t>(p2 >> 32) ^ c1 ^ k0;
    const uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ c3 ^ k1;
    c1 = static_cast<uint32_t>(p2);
    c3 = static_cast<uint32_t>(p0);
    c0 = n0;
    c2 = n2;
    k0 += kPhiloxKeyA;
    k1 += kPhiloxKeyB;
  }
}

// The four words of Philox at counter (offset_lo, offset_hi, 0, 0), key (seed_lo, seed_hi).
AEVB_HD void philox_at(uint64_t seed, uint64_t offset, uint32_t& w0, uint32_t& w1, uint32_t& w2, uint32_t& w3) {
  w0 = static_cast<uint32_t>(offset);
  w1 = static_cast<uint32_t>(offset >> 32);
  w2 = w3 = 0;
  philox4x32_10(w0, w1, w2, w3, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

// tl.rand's map of a word to [0, 1): read as int32 x, (x < 0 ? ~x : x) * 4.6566127342e-10.
AEVB_HD float uint_to_uniform(uint32_t word) {
  const int32_t x = static_cast<int32_t>(word);
  return static_cast<float>(x < 0 ? ~x : x) * 4.6566127342e-10f;
}

// Box-Muller as tl.randn: eps = sqrt(-2 log max(u1, 1e-7)) * cos(2 pi u2).
template <typename Log, typename Cos, typename Sqrt>
AEVB_HD float normal_from_words(uint32_t w0, uint32_t w1, Log log_f, Cos cos_f, Sqrt sqrt_f) {
  float u1 = uint_to_uniform(w0);
  const float u2 = uint_to_uniform(w1);
  u1 = u1 < 1.0e-7f ? 1.0e-7f : u1;
  const float theta = 6.283185307179586f * u2;
  return sqrt_f(-2.0f * log_f(u1)) * cos_f(theta);
}

}  // namespace aevb
