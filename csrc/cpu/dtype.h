// Element types the CPU kernels read and write and their conversion to the math type (the dtype
// codes and their dispatch are csrc/common/dtype.h). float16/bfloat16 are storage only: every
// kernel loads them into float and rounds back (to nearest even) when it stores.
#pragma once

#include <cstdint>
#include <type_traits>

#include "../common/dtype.h"
#include "vmath.h"

namespace aevb::cpu {

using aevb::DType;
using aevb::Tag;

struct bf16 {
  uint16_t bits;
};
using f16 = _Float16;

// The math type of a storage type: double for double, float for everything else.
template <typename T>
using math_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

template <typename M, typename T>
inline M load(T v) {
  return static_cast<M>(v);
}
template <typename M>
inline M load(bf16 v) {
  return static_cast<M>(bits_float(static_cast<uint32_t>(v.bits) << 16));
}
template <typename M>
inline M load(f16 v) {
  return static_cast<M>(static_cast<float>(v));
}

template <typename T, typename M>
inline T store(M v) {
  if constexpr (std::is_same_v<T, bf16>) {
    const uint32_t u = float_bits(static_cast<float>(v));
    const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    return bf16{static_cast<uint16_t>((u & 0x7fffffffu) > 0x7f800000u ? (u >> 16) | 0x40u : rounded)};
  } else {
    return static_cast<T>(v);
  }
}

// The half-precision storage types, for csrc/common/dtype.h's dispatch_float<Types> and
// dispatch_value_target<Types>.
struct Types {
  using f16 = cpu::f16;
  using bf16 = cpu::bf16;
};

}  // namespace aevb::cpu
