// Gaussian log-likelihood (PAPER.md, Gaussian MLP decoder), s = logvar:
//   log N(x; m, exp(s)) = -1/2 sum_d (log 2pi + s + (x - m)^2 exp(-s))
//   d/dm = (x - m) exp(-s),  d/ds = ((x - m)^2 exp(-s) - 1) / 2, made in the same pass.
#include <cstdint>

#include "kernels.h"
#include "parallel.h"

namespace aevb::cpu {
namespace {

template <typename T, typename X>
AEVB_SIMD double forward_chunk(const X* x, const T* mean, const T* logvar, T* grad_mean, T* grad_logvar, int64_t n) {
  using M = math_t<T>;
  const M log_2pi = M(1.8378770664093454835606594728112);
  double acc = 0;
  const bool want_grad = grad_mean != nullptr;
#pragma omp simd reduction(+ : acc)
  for (int64_t i = 0; i < n; ++i) {
    const M d = load<M>(x[i]) - load<M>(mean[i]), s = load<M>(logvar[i]);
    const M w = vexp(-s), q = d * d * w;
    acc += static_cast<double>(log_2pi + s + q);
    if (want_grad) {
      grad_mean[i] = store<T>(d * w);
      grad_logvar[i] = store<T>(M(0.5) * (q - M(1)));
    }
  }
  return -0.5 * acc;
}

}  // namespace

void gaussian_forward(DType t, DType tx, const void* x, const void* mean, const void* logvar, void* log_prob,
                      void* grad_mean, void* grad_logvar, int64_t N, int64_t Nx, int64_t D, int threads) {
  dispatch_value_target(t, tx, [&](auto tag, auto xtag) {
    using T = typename decltype(tag)::type;
    using X = typename decltype(xtag)::type;
    const X* x_ = static_cast<const X*>(x);
    const T* m = static_cast<const T*>(mean);
    const T* s = static_cast<const T*>(logvar);
    T* gm = static_cast<T*>(grad_mean);
    T* gs = static_cast<T*>(grad_logvar);
    reduce_rows(N, D, 1, static_cast<math_t<T>*>(log_prob), threads_for(N * D, threads),
                [&](int64_t row, int64_t begin, int64_t end, double* partial) {
                  const int64_t at = row * D + begin;
                  partial[0] = forward_chunk<T, X>(x_ + (row % Nx) * D + begin, m + at, s + at,
                                                   gm ? gm + at : nullptr, gs ? gs + at : nullptr, end - begin);
                });
  });
}

}  // namespace aevb::cpu
