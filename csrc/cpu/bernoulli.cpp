// The Bernoulli log-likelihood from logits (docs/paper.md, Bernoulli MLP decoder):
//   log p(x|z) = sum_d x log y + (1 - x) log(1 - y),  y = sigmoid(a),  = sum_d x a - softplus(a)
// and its backward d/da = g (x - sigmoid(a)), g the row's upstream gradient, recomputed from a and x
// (cheaper than storing a gradient between the passes: see csrc/common/kernel_list.h); and the
// continuous Bernoulli's, the same terms plus the normalizer log C(a), through the same passes. The
// per-element math, in stable form, is csrc/common/bernoulli.h's and continuous_bernoulli.h's.
#include "../common/bernoulli.h"

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "../common/continuous_bernoulli.h"
#include "kernels.h"
#include "parallel.h"
#include "prefetch.h"

namespace aevb::cpu {
namespace {

// Orders floats by their bits as unsigned integers: at most key(1) exactly for t in [0, 1] (-0 made +0
// by the addition), above it for negatives (the sign bit), values past 1, infinities and NaN.
inline uint32_t range_key(float t) { return float_bits(t + 0.0f); }
inline uint64_t range_key(double t) {
  uint64_t u;
  t += 0.0;
  std::memcpy(&u, &t, sizeof u);
  return u;
}

template <typename M, typename X>
int32_t count_outside(const X* x, int64_t n) {
  int32_t outside = 0;
  for (int64_t i = 0; i < n; ++i) {
    const M t = load<M>(x[i]);
    outside += (t >= M(0) && t <= M(1)) ? 0 : 1;  // NaN fails both comparisons
  }
  return outside;
}

// Sub-chunks of kSub elements (the last one takes the remainder up to 2 kSub - 1), each an exp pass
// and then a log1p-and-sum pass. exp in a pass of its own: chained with log1p in one loop, the two
// polynomials' latency stalled the pipeline (a third slower). Sub-chunks rather than whole chunks so
// that the prefetches of the exp pass keep memory busy through the sum pass, which issues none (its
// sum is a reduction, which GCC finishes at the end of each loop): at float32 [4096, 12288] the
// forward pass took 32 ms against 36 ms for two passes over the whole chunk.
constexpr int64_t kSub = 256;

// kContinuous: the continuous Bernoulli, whose term takes log(u / (1 - e)) where the Bernoulli's
// takes log1p(e) (one log either way).
template <bool kContinuous, typename T, typename X>
AEVB_SIMD double forward_chunk(const T* logits, const X* x, int64_t n, int64_t* bad) {
  using M = math_t<T>;
  M exp_neg_abs[2 * kSub];
  double acc = 0;
  // The targets' range as a maximum of keys (two instructions a vector against five for a count);
  // a chunk with a target outside [0, 1] is counted again.
  decltype(range_key(M(0))) key = 0;
  for (int64_t begin = 0, m = 0; begin < n; begin += m) {
    m = n - begin < 2 * kSub ? n - begin : kSub;
    const T* a_ = logits + begin;
    const X* x_ = x + begin;
    for_each_prefetching(
        m,
        [&](int64_t i)
            __attribute__((always_inline)) { exp_neg_abs[i] = vexp_nonpositive(-std::fabs(load<M>(a_[i]))); },
        a_, x_);
#pragma omp simd reduction(+ : acc) reduction(max : key)
    for (int64_t i = 0; i < m; ++i) {
      const M a = load<M>(a_[i]), t = load<M>(x_[i]);
      if constexpr (kContinuous) {
        const M log_ratio = vlog(continuous_bernoulli::ratio(a, exp_neg_abs[i]));
        acc += static_cast<double>(continuous_bernoulli::term(a, t, log_ratio));
      } else {
        acc += static_cast<double>(bernoulli::term(a, t, vlog1p(exp_neg_abs[i])));
      }
      const auto k = range_key(t);
      key = k > key ? k : key;
    }
  }
  if (key > range_key(M(1))) *bad += count_outside<M>(x, n);
  return acc;
}

template <bool kContinuous, typename T, typename X>
AEVB_SIMD void backward_chunk(math_t<T> g, const T* logits, const X* x, T* grad, int64_t n) {
  using M = math_t<T>;
  for_each_prefetching(
      n,
      [&](int64_t i) __attribute__((always_inline)) {
        const M a = load<M>(logits[i]), t = load<M>(x[i]), e = vexp_nonpositive(-std::fabs(a));
        grad[i] = store<T>(kContinuous ? continuous_bernoulli::grad(g, a, t, e) : bernoulli::grad(g, a, t, e));
      },
      logits, x);
}

template <bool kContinuous>
int64_t forward(DType t, DType tx, const void* logits, const void* x, void* log_prob, int64_t N, int64_t Nx, int64_t D,
                int threads) {
  std::atomic<int64_t> bad{0};
  dispatch_likelihood<Types>(t, tx, N, Nx, [&](auto tag, auto xtag) {
    using T = typename decltype(tag)::type;
    using X = typename decltype(xtag)::type;
    const T* a = static_cast<const T*>(logits);
    const X* x_ = static_cast<const X*>(x);
    reduce_rows(N, D, 1, static_cast<math_t<T>*>(log_prob), threads_for(N * D, threads),
                [&](int64_t row, int64_t begin, int64_t end, double* partial) {
                  int64_t outside = 0;
                  partial[0] = forward_chunk<kContinuous, T, X>(a + row * D + begin, x_ + (row % Nx) * D + begin,
                                                                end - begin, &outside);
                  if (outside) bad.fetch_add(outside, std::memory_order_relaxed);
                });
  });
  return bad.load();
}

template <bool kContinuous>
void backward(DType t, DType tx, const void* grad_log_prob, const void* logits, const void* x, void* grad, int64_t N,
              int64_t Nx, int64_t D, int threads) {
  dispatch_likelihood<Types>(t, tx, N, Nx, [&](auto tag, auto xtag) {
    using T = typename decltype(tag)::type;
    using X = typename decltype(xtag)::type;
    const math_t<T>* g = static_cast<const math_t<T>*>(grad_log_prob);
    const T* a = static_cast<const T*>(logits);
    const X* x_ = static_cast<const X*>(x);
    T* out = static_cast<T*>(grad);
    for_each_chunk(N, D, threads_for(N * D, threads), [&](int64_t row, int64_t begin, int64_t end) {
      const int64_t at = row * D + begin;
      backward_chunk<kContinuous, T, X>(g[row], a + at, x_ + (row % Nx) * D + begin, out + at, end - begin);
    });
  });
}

}  // namespace

int64_t bernoulli_forward(DType t, DType tx, const void* logits, const void* x, void* log_prob, int64_t N, int64_t Nx,
                          int64_t D, int threads) {
  return forward<false>(t, tx, logits, x, log_prob, N, Nx, D, threads);
}

void bernoulli_backward(DType t, DType tx, const void* grad_log_prob, const void* logits, const void* x, void* grad,
                        int64_t N, int64_t Nx, int64_t D, int threads) {
  backward<false>(t, tx, grad_log_prob, logits, x, grad, N, Nx, D, threads);
}

int64_t continuous_bernoulli_forward(DType t, DType tx, const void* logits, const void* x, void* log_prob, int64_t N,
                                     int64_t Nx, int64_t D, int threads) {
  return forward<true>(t, tx, logits, x, log_prob, N, Nx, D, threads);
}

void continuous_bernoulli_backward(DType t, DType tx, const void* grad_log_prob, const void* logits, const void* x,
                                   void* grad, int64_t N, int64_t Nx, int64_t D, int threads) {
  backward<true>(t, tx, grad_log_prob, logits, x, grad, N, Nx, D, threads);
}

}  // namespace aevb::cpu
