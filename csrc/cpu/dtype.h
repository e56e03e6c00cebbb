// Element types the CPU kernels read and write, their conversion to the math type, and the
// switch from a runtime dtype code to a template instantiation. float16/bfloat16 are storage
// only: every kernel loads them into float and rounds back (to nearest even) when it stores.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "vmath.h"

namespace aevb::cpu {

// Codes shared with aevb_fast/ops/_native.py.
enum class DType : int { f32 = 0, f64 = 1, f16 = 2, bf16 = 3, u8 = 4, b8 = 5 };

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

template <typename T>
struct Tag {
  using type = T;
};

// Calls f(Tag<T>{}) for a floating dtype code.
template <typename F>
void dispatch_float(DType t, F&& f) {
  switch (t) {
    case DType::f32: return f(Tag<float>{});
    case DType::f64: return f(Tag<double>{});
    case DType::f16: return f(Tag<f16>{});
    case DType::bf16: return f(Tag<bf16>{});
    default: throw std::invalid_argument("aevb_fast._C: unsupported floating dtype code " + std::to_string(int(t)));
  }
}

// Calls f(Tag<T>{}, Tag<X>{}) for the value dtype T and a target dtype X. Targets are T itself,
// float32 (beside a half-precision T), uint8 or bool: the Python layer casts any other float.
template <typename F>
void dispatch_value_target(DType t, DType x, F&& f) {
  dispatch_float(t, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (x == t) return f(tag, tag);
    if (x == DType::u8) return f(tag, Tag<uint8_t>{});
    if (x == DType::b8) return f(tag, Tag<bool>{});
    if constexpr (std::is_same_v<T, f16> || std::is_same_v<T, bf16>) {
      if (x == DType::f32) return f(tag, Tag<float>{});
    }
    throw std::invalid_argument("aevb_fast._C: unsupported target dtype code " + std::to_string(int(x)) +
                                " beside value dtype code " + std::to_string(int(t)));
  });
}

}  // namespace aevb::cpu
