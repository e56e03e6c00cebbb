// Laplace log-likelihood, s = logscale: log p(x|loc, s) = -sum_d (log 2 + s + |x - loc| exp(-s)), and
// its backward, recomputed from x, loc and s; the per-element math is csrc/common/laplace.h's.
#include "../common/laplace.h"

#include <cstdint>

#include "kernels.h"
#include "parallel.h"
#include "prefetch.h"

namespace aevb::cpu {
namespace {

// The terms in a pass of their own, which can prefetch (prefetch.h), before their sum (see
// gaussian.cpp).
template <typename T, typename X>
AEVB_SIMD double forward_chunk(const X* x, const T* loc, const T* logscale, int64_t n) {
  using M = math_t<T>;
  M terms[kChunk];
  for_each_prefetching(
      n,
      [&](int64_t i) __attribute__((always_inline)) {
        const M d = load<M>(x[i]) - load<M>(loc[i]), s = load<M>(logscale[i]);
        terms[i] = laplace::term(d, s, vexp(M(-0.5) * s));
      },
      x, loc, logscale);
  double acc = 0;
#pragma omp simd reduction(+ : acc)
  for (int64_t i = 0; i < n; ++i) acc += static_cast<double>(terms[i]);
  return -acc;
}

template <typename T, typename X>
AEVB_SIMD void backward_chunk(math_t<T> g, const X* x, const T* loc, const T* logscale, T* grad_loc, T* grad_logscale,
                              int64_t n) {
  using M = math_t<T>;
  for_each_prefetching(
      n,
      [&](int64_t i) __attribute__((always_inline)) {
        const M d = load<M>(x[i]) - load<M>(loc[i]), e = vexp(M(-0.5) * load<M>(logscale[i]));
        grad_loc[i] = store<T>(laplace::grad_loc(g, d, e));
        grad_logscale[i] = store<T>(laplace::grad_logscale(g, d, e));
      },
      x, loc, logscale);
}

}  // namespace

void laplace_forward(DType t, DType tx, const void* x, const void* loc, const void* logscale, void* log_prob, int64_t N,
                     int64_t Nx, int64_t D, int threads) {
  dispatch_likelihood<Types>(t, tx, N, Nx, [&](auto tag, auto xtag) {
    using T = typename decltype(tag)::type;
    using X = typename decltype(xtag)::type;
    const X* x_ = static_cast<const X*>(x);
    const T* m = static_cast<const T*>(loc);
    const T* s = static_cast<const T*>(logscale);
    reduce_rows(N, D, 1, static_cast<math_t<T>*>(log_prob), threads_for(N * D, threads),
                [&](int64_t row, int64_t begin, int64_t end, double* partial) {
                  const int64_t at = row * D + begin;
                  partial[0] = forward_chunk<T, X>(x_ + (row % Nx) * D + begin, m + at, s + at, end - begin);
                });
  });
}

void laplace_backward(DType t, DType tx, const void* grad_log_prob, const void* x, const void* loc,
                      const void* logscale, void* grad_loc, void* grad_logscale, int64_t N, int64_t Nx, int64_t D,
                      int threads) {
  dispatch_likelihood<Types>(t, tx, N, Nx, [&](auto tag, auto xtag) {
    using T = typename decltype(tag)::type;
    using X = typename decltype(xtag)::type;
    const math_t<T>* g = static_cast<const math_t<T>*>(grad_log_prob);
    const X* x_ = static_cast<const X*>(x);
    const T* m = static_cast<const T*>(loc);
    const T* s = static_cast<const T*>(logscale);
    T* gm = static_cast<T*>(grad_loc);
    T* gs = static_cast<T*>(grad_logscale);
    for_each_chunk(N, D, threads_for(N * D, threads), [&](int64_t row, int64_t begin, int64_t end) {
      const int64_t at = row * D + begin;
      backward_chunk<T, X>(g[row], x_ + (row % Nx) * D + begin, m + at, s + at, gm + at, gs + at, end - begin);
    });
  });
}

}  // namespace aevb::cpu
