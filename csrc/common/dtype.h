// Dtype codes shared by the CPU and CUDA kernels and aevb_fast/ops/_native.py, and the switch from
// a runtime code to a template instantiation. Each backend names its own half-precision storage
// types (a Types struct with f16 and bf16); everything else is common.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>

namespace aevb {

enum class DType : int { f32 = 0, f64 = 1, f16 = 2, bf16 = 3, u8 = 4, b8 = 5 };

// Bytes per element of a dtype code.
inline size_t element_size(DType t) {
  switch (t) {
    case DType::f64:
      return 8;
    case DType::f32:
      return 4;
    case DType::f16:
    case DType::bf16:
      return 2;
    default:
      return 1;
  }
}

template <typename T>
struct Tag {
  using type = T;
};

// Calls f(Tag<T>{}) for a floating dtype code.
template <typename Types, typename F>
void dispatch_float(DType t, F&& f) {
  switch (t) {
    case DType::f32:
      return f(Tag<float>{});
    case DType::f64:
      return f(Tag<double>{});
    case DType::f16:
      return f(Tag<typename Types::f16>{});
    case DType::bf16:
      return f(Tag<typename Types::bf16>{});
    default:
      throw std::invalid_argument("aevb_fast._C: unsupported floating dtype code " + std::to_string(int(t)));
  }
}

// Calls f(Tag<T>{}, Tag<X>{}) for the value dtype T and a target dtype X. Targets are T itself,
// float32 (beside a half-precision T), uint8 or bool: the Python layer casts any other float.
template <typename Types, typename F>
void dispatch_value_target(DType t, DType x, F&& f) {
  dispatch_float<Types>(t, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (x == t) return f(tag, tag);
    if (x == DType::u8) return f(tag, Tag<uint8_t>{});
    if (x == DType::b8) return f(tag, Tag<bool>{});
    if constexpr (std::is_same_v<T, typename Types::f16> || std::is_same_v<T, typename Types::bf16>) {
      if (x == DType::f32) return f(tag, Tag<float>{});
    }
    throw std::invalid_argument("aevb_fast._C: unsupported target dtype code " + std::to_string(int(x)) +
                                " beside value dtype code " + std::to_string(int(t)));
  });
}

// dispatch_value_target for a likelihood kernel over N rows of values reading target row n % Nx:
// refuses Nx < 1 beside rows (a division by zero in every kernel) before anything runs.
template <typename Types, typename F>
void dispatch_likelihood(DType t, DType x, int64_t N, int64_t Nx, F&& f) {
  if (N > 0 && Nx < 1) {
    throw std::invalid_argument("aevb_fast._C: a likelihood kernel over " + std::to_string(N) +
                                " rows needs Nx >= 1 target rows, got " + std::to_string(Nx));
  }
  dispatch_value_target<Types>(t, x, static_cast<F&&>(f));
}

}  // namespace aevb
