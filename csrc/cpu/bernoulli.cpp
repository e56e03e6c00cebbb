// Bernoulli log-likelihood from logits (PAPER.md, Bernoulli MLP decoder):
//   log p(x|z) = sum_d x log y + (1 - x) log(1 - y),  y = sigmoid(a)
//              = sum_d x a - softplus(a),  softplus(a) = max(a, 0) + log1p(exp(-|a|))
//              = sum_d s a - log1p(exp(-|a|)),  s = x - 1 for a >= 0, x for a < 0
//   s a is x a - max(a, 0) without its inf - inf at a = +inf; s = 0 gives the limit 0 (0 log 0 = 0)
//   where s a would be 0 * inf (a = +inf with x = 1, a = -inf with x = 0). A NaN logit or target
//   still gives NaN (through log1p, or s).
//   backward:  d/da = g (x - sigmoid(a)), g the row's upstream gradient, recomputed from a and x
//              (cheaper than storing a gradient between the passes: see kernels.h).
#include <atomic>
#include <cstdint>

#include "kernels.h"
#include "parallel.h"

namespace aevb::cpu {
namespace {

template <typename T, typename X>
AEVB_SIMD double forward_chunk(const T* logits, const X* x, int64_t n, int64_t* bad) {
  using M = math_t<T>;
  // exp in a pass of its own: chained with log1p in one loop, the two polynomials' latency
  // stalled the pipeline (a third slower).
  M exp_neg_abs[kChunk];
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const M a = load<M>(logits[i]);
    exp_neg_abs[i] = vexp(-(a < M(0) ? -a : a));
  }
  double acc = 0;
  int32_t outside = 0;  // a chunk holds at most kChunk elements
#pragma omp simd reduction(+ : acc, outside)
  for (int64_t i = 0; i < n; ++i) {
    const M a = load<M>(logits[i]), t = load<M>(x[i]);
    const M e = exp_neg_abs[i], u = M(1) + e;
    const M s = a < M(0) ? t : t - M(1);
    acc += static_cast<double>((s == M(0) ? M(0) : s * a) - vlog1p(e, u, M(1) / u));
    outside += (t >= M(0) && t <= M(1)) ? 0 : 1;  // NaN fails both comparisons
  }
  *bad += outside;
  return acc;
}

template <typename T, typename X>
AEVB_SIMD void backward_chunk(math_t<T> g, const T* logits, const X* x, T* grad, int64_t n) {
  using M = math_t<T>;
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const M a = load<M>(logits[i]);
    const M e = vexp(-(a < M(0) ? -a : a)), r = M(1) / (M(1) + e);
    // sigmoid(a) = 1 / (1 + e) for a >= 0, e / (1 + e) below
    grad[i] = store<T>(g * (load<M>(x[i]) - (a >= M(0) ? r : e * r)));
  }
}

}  // namespace

int64_t bernoulli_forward(DType t, DType tx, const void* logits, const void* x, void* log_prob, int64_t N, int64_t Nx,
                          int64_t D, int threads) {
  std::atomic<int64_t> bad{0};
  dispatch_value_target<Types>(t, tx, [&](auto tag, auto xtag) {
    using T = typename decltype(tag)::type;
    using X = typename decltype(xtag)::type;
    const T* a = static_cast<const T*>(logits);
    const X* x_ = static_cast<const X*>(x);
    reduce_rows(N, D, 1, static_cast<math_t<T>*>(log_prob), threads_for(N * D, threads),
                [&](int64_t row, int64_t begin, int64_t end, double* partial) {
                  int64_t outside = 0;
                  partial[0] = forward_chunk<T, X>(a + row * D + begin, x_ + (row % Nx) * D + begin, end - begin,
                                                   &outside);
                  if (outside) bad.fetch_add(outside, std::memory_order_relaxed);
                });
  });
  return bad.load();
}

void bernoulli_backward(DType t, DType tx, const void* grad_log_prob, const void* logits, const void* x, void* grad,
                        int64_t N, int64_t Nx, int64_t D, int threads) {
  dispatch_value_target<Types>(t, tx, [&](auto tag, auto xtag) {
    using T = typename decltype(tag)::type;
    using X = typename decltype(xtag)::type;
    const math_t<T>* g = static_cast<const math_t<T>*>(grad_log_prob);
    const T* a = static_cast<const T*>(logits);
    const X* x_ = static_cast<const X*>(x);
    T* out = static_cast<T*>(grad);
    for_each_chunk(N, D, threads_for(N * D, threads), [&](int64_t row, int64_t begin, int64_t end) {
      const int64_t at = row * D + begin;
      backward_chunk<T, X>(g[row], a + at, x_ + (row % Nx) * D + begin, out + at, end - begin);
    });
  });
}

}  // namespace aevb::cpu
