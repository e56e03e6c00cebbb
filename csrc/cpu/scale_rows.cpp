// The backward of the row-valued likelihood ops: their gradients are made in the forward
// pass, so the backward only scales each row by its upstream gradient, in float math.
#include <cstdint>

#include "kernels.h"
#include "parallel.h"

namespace aevb::cpu {
namespace {

template <typename T>
AEVB_SIMD void scale_chunk(const T* grad, math_t<T> scale, T* out, int64_t n) {
  using M = math_t<T>;
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) out[i] = store<T>(load<M>(grad[i]) * scale);
}

}  // namespace

void scale_rows(DType t, const void* grad, const void* scale, void* out, int64_t N, int64_t D, int threads) {
  dispatch_float(t, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* g = static_cast<const T*>(grad);
    const math_t<T>* s = static_cast<const math_t<T>*>(scale);
    T* o = static_cast<T*>(out);
    for_each_chunk(N, D, threads_for(N * D, threads), [&](int64_t row, int64_t begin, int64_t end) {
      scale_chunk<T>(g + row * D + begin, s[row], o + row * D + begin, end - begin);
    });
  });
}

}  // namespace aevb::cpu
