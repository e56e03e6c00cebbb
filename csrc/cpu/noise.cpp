// Philox normals in blocks. GCC vectorizes the scalar Philox of philox.h poorly (it unpacks every
// 32x32->64 bit product across lanes), so the rounds are written with intrinsics: the even and
// odd lanes' products come from two vpmuludq and are blended back into hi and lo words. The
// Box-Muller step is plain code that the compiler vectorizes for each target.
#include "noise.h"

#include <cmath>
#include <cstdint>

#include "../common/philox.h"
#include "parallel.h"
#include "vmath.h"

#if defined(__x86_64__) && !defined(__clang__)
#define AEVB_X86_DISPATCH 1
#include <immintrin.h>
#endif

namespace aevb::cpu {
namespace {

// The first two Philox words at counters offset + i, i in [begin, n), with the scalar rounds.
inline void words_scalar(uint64_t seed, uint64_t offset, int64_t begin, int64_t n, uint32_t* w0, uint32_t* w1) {
  uint32_t w2, w3;
  for (int64_t i = begin; i < n; ++i) philox_at(seed, offset + static_cast<uint64_t>(i), w0[i], w1[i], w2, w3);
}

// Box-Muller as tl.randn, inlined into each target's normal_block so it vectorizes for it.
__attribute__((always_inline)) inline void box_muller(const uint32_t* w0, const uint32_t* w1, int64_t n, float* out) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    out[i] = normal_from_words(
        w0[i], w1[i], [](float u) { return vlog(u); }, [](float x) { return vcos(x); },
        [](float x) { return std::sqrt(x); });
  }
}

#ifdef AEVB_X86_DISPATCH
// Whether the low counter words of a block of `lanes` wrap past 2^32 inside it; such a block
// (one in 2^29 or so) takes the scalar path rather than carrying into the high word per lane.
inline bool block_wraps(uint64_t first, int lanes) {
  return static_cast<uint32_t>(first) > 0xFFFFFFFFu - static_cast<uint32_t>(lanes - 1);
}

__attribute__((target("avx2"))) void words_avx2(uint64_t seed, uint64_t offset, int64_t n, uint32_t* w0, uint32_t* w1) {
  const __m256i A = _mm256_set1_epi32(static_cast<int>(kPhiloxRoundA)),
                B = _mm256_set1_epi32(static_cast<int>(kPhiloxRoundB));
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  // The round keys depend on the seed alone: broadcast them once, not in every block.
  __m256i key0[10], key1[10];
  for (int round = 0; round < 10; ++round) {
    key0[round] = _mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(seed) + round * kPhiloxKeyA));
    key1[round] = _mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(seed >> 32) + round * kPhiloxKeyB));
  }
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const uint64_t first = offset + static_cast<uint64_t>(i);
    if (block_wraps(first, 8)) {
      words_scalar(seed, offset, i, i + 8, w0, w1);
      continue;
    }
    __m256i c0 = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(first))), lanes);
    __m256i c1 = _mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(first >> 32)));
    __m256i c2 = _mm256_setzero_si256(), c3 = _mm256_setzero_si256();
#pragma GCC unroll 10
    for (int round = 0; round < 10; ++round) {
      const __m256i p0e = _mm256_mul_epu32(c0, A), p0o = _mm256_mul_epu32(_mm256_srli_epi64(c0, 32), A);
      const __m256i p2e = _mm256_mul_epu32(c2, B), p2o = _mm256_mul_epu32(_mm256_srli_epi64(c2, 32), B);
      const __m256i hi0 = _mm256_blend_epi32(_mm256_srli_epi64(p0e, 32), p0o, 0xAA);
      const __m256i lo0 = _mm256_blend_epi32(p0e, _mm256_slli_epi64(p0o, 32), 0xAA);
      const __m256i hi2 = _mm256_blend_epi32(_mm256_srli_epi64(p2e, 32), p2o, 0xAA);
      const __m256i lo2 = _mm256_blend_epi32(p2e, _mm256_slli_epi64(p2o, 32), 0xAA);
      c0 = _mm256_xor_si256(_mm256_xor_si256(hi2, c1), key0[round]);
      c2 = _mm256_xor_si256(_mm256_xor_si256(hi0, c3), key1[round]);
      c1 = lo2;
      c3 = lo0;
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(w0 + i), c0);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(w1 + i), c1);
  }
  words_scalar(seed, offset, i, n, w0, w1);
}

__attribute__((target("avx512f"))) void words_avx512(uint64_t seed, uint64_t offset, int64_t n, uint32_t* w0,
                                                     uint32_t* w1) {
  const __m512i A = _mm512_set1_epi32(static_cast<int>(kPhiloxRoundA)),
                B = _mm512_set1_epi32(static_cast<int>(kPhiloxRoundB));
  const __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __mmask16 odd = 0xAAAA;
  __m512i key0[10], key1[10];
  for (int round = 0; round < 10; ++round) {
    key0[round] = _mm512_set1_epi32(static_cast<int>(static_cast<uint32_t>(seed) + round * kPhiloxKeyA));
    key1[round] = _mm512_set1_epi32(static_cast<int>(static_cast<uint32_t>(seed >> 32) + round * kPhiloxKeyB));
  }
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const uint64_t first = offset + static_cast<uint64_t>(i);
    if (block_wraps(first, 16)) {
      words_scalar(seed, offset, i, i + 16, w0, w1);
      continue;
    }
    __m512i c0 = _mm512_add_epi32(_mm512_set1_epi32(static_cast<int>(static_cast<uint32_t>(first))), lanes);
    __m512i c1 = _mm512_set1_epi32(static_cast<int>(static_cast<uint32_t>(first >> 32)));
    __m512i c2 = _mm512_setzero_si512(), c3 = _mm512_setzero_si512();
#pragma GCC unroll 10
    for (int round = 0; round < 10; ++round) {
      const __m512i p0e = _mm512_mul_epu32(c0, A), p0o = _mm512_mul_epu32(_mm512_srli_epi64(c0, 32), A);
      const __m512i p2e = _mm512_mul_epu32(c2, B), p2o = _mm512_mul_epu32(_mm512_srli_epi64(c2, 32), B);
      const __m512i hi0 = _mm512_mask_blend_epi32(odd, _mm512_srli_epi64(p0e, 32), p0o);
      const __m512i lo0 = _mm512_mask_blend_epi32(odd, p0e, _mm512_slli_epi64(p0o, 32));
      const __m512i hi2 = _mm512_mask_blend_epi32(odd, _mm512_srli_epi64(p2e, 32), p2o);
      const __m512i lo2 = _mm512_mask_blend_epi32(odd, p2e, _mm512_slli_epi64(p2o, 32));
      c0 = _mm512_xor_si512(_mm512_xor_si512(hi2, c1), key0[round]);
      c2 = _mm512_xor_si512(_mm512_xor_si512(hi0, c3), key1[round]);
      c1 = lo2;
      c3 = lo0;
    }
    _mm512_storeu_si512(w0 + i, c0);
    _mm512_storeu_si512(w1 + i, c1);
  }
  words_scalar(seed, offset, i, n, w0, w1);
}

__attribute__((target("default"))) void normal_block_for_cpu(uint64_t seed, uint64_t offset, int64_t n, float* out) {
  uint32_t w0[kChunk], w1[kChunk];
  words_scalar(seed, offset, 0, n, w0, w1);
  box_muller(w0, w1, n, out);
}

__attribute__((target("arch=x86-64-v3"))) void normal_block_for_cpu(uint64_t seed, uint64_t offset, int64_t n,
                                                                    float* out) {
  uint32_t w0[kChunk], w1[kChunk];
  words_avx2(seed, offset, n, w0, w1);
  box_muller(w0, w1, n, out);
}

__attribute__((target("arch=x86-64-v4"))) void normal_block_for_cpu(uint64_t seed, uint64_t offset, int64_t n,
                                                                    float* out) {
  uint32_t w0[kChunk], w1[kChunk];
  words_avx512(seed, offset, n, w0, w1);
  box_muller(w0, w1, n, out);
}

#else
void normal_block_for_cpu(uint64_t seed, uint64_t offset, int64_t n, float* out) {
  uint32_t w0[kChunk], w1[kChunk];
  words_scalar(seed, offset, 0, n, w0, w1);
  box_muller(w0, w1, n, out);
}
#endif

}  // namespace

void normal_block(uint64_t seed, uint64_t offset, int64_t n, float* out) { normal_block_for_cpu(seed, offset, n, out); }

}  // namespace aevb::cpu
