// Gaussian log-likelihood (docs/paper.md, Gaussian MLP decoder), s = logvar:
//   log N(x; m, exp(s)) = -1/2 sum_d (log 2pi + s + r^2),  r = (x - m) exp(-s/2)
// and its backward, recomputed from x, m and s; the per-element math is csrc/common/gaussian.h's.
#include "../common/gaussian.h"

#include <cstdint>

#include "kernels.h"
#include "parallel.h"
#include "prefetch.h"

namespace aevb::cpu {
namespace {

// The terms in a pass of their own, which can prefetch (prefetch.h), before their sum (a reduction,
// which cannot: GCC finishes it at the end of each loop).
template <typename T, typename X>
AEVB_SIMD double forward_chunk(const X* x, const T* mean, const T* logvar, int64_t n) {
  using M = math_t<T>;
  M terms[kChunk];
  for_each_prefetching(
      n,
      [&](int64_t i) __attribute__((always_inline)) {
        const M d = load<M>(x[i]) - load<M>(mean[i]), s = load<M>(logvar[i]);
        terms[i] = gaussian::term(d, s, vexp(M(-0.5) * s));
      },
      x, mean, logvar);
  double acc = 0;
#pragma omp simd reduction(+ : acc)
  for (int64_t i = 0; i < n; ++i) acc += static_cast<double>(terms[i]);
  return -0.5 * acc;
}

template <typename T, typename X>
AEVB_SIMD void backward_chunk(math_t<T> g, const X* x, const T* mean, const T* logvar, T* grad_mean, T* grad_logvar,
                              int64_t n) {
  using M = math_t<T>;
  for_each_prefetching(
      n,
      [&](int64_t i) __attribute__((always_inline)) {
        const M d = load<M>(x[i]) - load<M>(mean[i]), e = vexp(M(-0.5) * load<M>(logvar[i]));
        grad_mean[i] = store<T>(gaussian::grad_mean(g, d, e));
        grad_logvar[i] = store<T>(gaussian::grad_logvar(g, d, e));
      },
      x, mean, logvar);
}

}  // namespace

void gaussian_forward(DType t, DType tx, const void* x, const void* mean, const void* logvar, void* log_prob, int64_t N,
                      int64_t Nx, int64_t D, int threads) {
  dispatch_likelihood<Types>(t, tx, N, Nx, [&](auto tag, auto xtag) {
    using T = typename decltype(tag)::type;
    using X = typename decltype(xtag)::type;
    const X* x_ = static_cast<const X*>(x);
    const T* m = static_cast<const T*>(mean);
    const T* s = static_cast<const T*>(logvar);
    reduce_rows(N, D, 1, static_cast<math_t<T>*>(log_prob), threads_for(N * D, threads),
                [&](int64_t row, int64_t begin, int64_t end, double* partial) {
                  const int64_t at = row * D + begin;
                  partial[0] = forward_chunk<T, X>(x_ + (row % Nx) * D + begin, m + at, s + at, end - begin);
                });
  });
}

void gaussian_backward(DType t, DType tx, const void* grad_log_prob, const void* x, const void* mean,
                       const void* logvar, void* grad_mean, void* grad_logvar, int64_t N, int64_t Nx, int64_t D,
                       int threads) {
  dispatch_likelihood<Types>(t, tx, N, Nx, [&](auto tag, auto xtag) {
    using T = typename decltype(tag)::type;
    using X = typename decltype(xtag)::type;
    const math_t<T>* g = static_cast<const math_t<T>*>(grad_log_prob);
    const X* x_ = static_cast<const X*>(x);
    const T* m = static_cast<const T*>(mean);
    const T* s = static_cast<const T*>(logvar);
    T* gm = static_cast<T*>(grad_mean);
    T* gs = static_cast<T*>(grad_logvar);
    for_each_chunk(N, D, threads_for(N * D, threads), [&](int64_t row, int64_t begin, int64_t end) {
      const int64_t at = row * D + begin;
      backward_chunk<T, X>(g[row], x_ + (row % Nx) * D + begin, m + at, s + at, gm + at, gs + at, end - begin);
    });
  });
}

}  // namespace aevb::cpu
