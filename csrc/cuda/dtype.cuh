// Element types the CUDA kernels read and write and their conversion to the math type (float32;
// float64 for float64 values). float16/bfloat16 are storage only: loaded into float, rounded to
// nearest even when stored. The dtype codes and their dispatch are csrc/common/dtype.h.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <type_traits>

#include "../common/dtype.h"

namespace aevb::cuda {

using aevb::DType;

template <typename T>
using math_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

template <typename M, typename T>
__device__ __forceinline__ M load(T v) {
  return static_cast<M>(v);
}
template <typename M>
__device__ __forceinline__ M load(__half v) {
  return static_cast<M>(__half2float(v));
}
template <typename M>
__device__ __forceinline__ M load(__nv_bfloat16 v) {
  return static_cast<M>(__bfloat162float(v));
}

template <typename T, typename M>
__device__ __forceinline__ T store(M v) {
  if constexpr (std::is_same_v<T, __half>) {
    return __float2half_rn(static_cast<float>(v));
  } else if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return __float2bfloat16_rn(static_cast<float>(v));
  } else {
    return static_cast<T>(v);
  }
}

// The precise CUDA math functions (never the __expf-style intrinsics), for float and double.
__device__ __forceinline__ float exp_(float v) { return expf(v); }
__device__ __forceinline__ double exp_(double v) { return exp(v); }
__device__ __forceinline__ float log_(float v) { return logf(v); }
__device__ __forceinline__ double log_(double v) { return log(v); }
__device__ __forceinline__ float log1p_(float v) { return log1pf(v); }
__device__ __forceinline__ double log1p_(double v) { return log1p(v); }

// The half-precision storage types, for csrc/common/dtype.h's dispatch_float<Types> and
// dispatch_value_target<Types>.
struct Types {
  using f16 = __half;
  using bf16 = __nv_bfloat16;
};

}  // namespace aevb::cuda
