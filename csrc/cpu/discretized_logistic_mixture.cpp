// The discretized logistic mixture's log-likelihood (Salimans et al. 2017), per row the sum over D
// grey levels x of log sum_k softmax(logit)_k P_k(x), K components each, and its backward,
// recomputed from the inputs; the per-component math is csrc/common/discretized_logistic_mixture.h's.
// The sum is taken as it stands (no log per component, one logsumexp rather than two) and a block
// whose sums underflow toward 0 is taken again as logsumexp_k(log softmax(logit)_k + log P_k(x)).
// Values are [N, D, K]: a pixel's components lie together, so blocks of kPixels pixels are read
// component by component into the lanes of a vector (a pixel a lane), and every loop over the block
// vectorizes.
#include "../common/discretized_logistic_mixture.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "denormals.h"
#include "kernels.h"
#include "parallel.h"
#include "vmath.h"

namespace aevb::cpu {
namespace {

constexpr int64_t kPixels = 32;

// The header's transcendental functions, forced inline as the header's component() is: a call
// left in a loop stops its vectorization.
struct VMath {
  __attribute__((always_inline)) static float exp(float x) { return vexp(x); }
  __attribute__((always_inline)) static float exp_nonpositive(float x) { return vexp_nonpositive(x); }
  // Logs of masses and sums: vlog's domain, the normal positive floats, and NaN and 0 (a NaN input,
  // a log scale of +inf), which vlog's bit manipulation would turn into a number.
  __attribute__((always_inline)) static float log(float x) {
    const float y = vlog(x);
    return x > 0.0f ? y : (x == 0.0f ? -std::numeric_limits<float>::infinity() : x);
  }
  __attribute__((always_inline)) static float log1p(float t) { return vlog1p(t); }
  __attribute__((always_inline)) static double exp(double x) { return std::exp(x); }
  __attribute__((always_inline)) static double exp_nonpositive(double x) { return std::exp(x); }
  __attribute__((always_inline)) static double log(double x) { return std::log(x); }
  __attribute__((always_inline)) static double log1p(double t) { return std::log1p(t); }
};

// A block of m <= kPixels pixels' K values, transposed: lane p of row k holds pixel p's value k
// (the component loops then read rows, not a stride of K, and vectorize).
template <typename T>
__attribute__((always_inline)) inline void block_rows(const T* values, int64_t m, int64_t K, math_t<T>* rows) {
  for (int64_t k = 0; k < K; ++k) {
#pragma omp simd
    for (int64_t p = 0; p < m; ++p) rows[k * kPixels + p] = load<math_t<T>>(values[p * K + k]);
  }
}

// The block's components from its rows of means and log scales, with (kDerivatives) log P's
// d/dmean and d/dlog_scale in place of the means and log scales. kLinear: w holds the rows' softmax
// weights, and v gets weight * P (the mixture's probability is then their sum, without a log per
// component or a second logsumexp); else w holds the logits and norm their logsumexp, and v gets
// (w - norm) + log P (the log-softmax taken first, so that huge logits do not absorb log P). Bins
// far in a tail take a second pass, only in blocks that have one (the common case then skips their
// exp, log and division); tails holds which. A function of its own, each target's clone: inlined
// into the chunk's loop over blocks, GCC did not vectorize its loop (a component took 40 ns instead
// of a few).
template <bool kLinear, bool kDerivatives, typename M, typename X>
AEVB_SIMD void block_components(const X* x, int64_t m, int64_t K, const M* w, const M* norm, M* means, M* log_scales,
                                M* v, M* tails) {
  int any_tail = 0;
  for (int64_t k = 0; k < K; ++k) {
#pragma omp simd reduction(| : any_tail)
    for (int64_t p = 0; p < m; ++p) {
      const int64_t l = k * kPixels + p;
      M log_p, mass, dm, ds;
      const bool tail =
          logistic_mixture::common_component<VMath>(load<M>(x[p]), means[l], log_scales[l], log_p, mass, dm, ds);
      any_tail |= tail;
      tails[l] = tail ? M(1) : M(0);
      v[l] = kLinear ? w[l] * mass : (w[l] - norm[p]) + log_p;
      if constexpr (kDerivatives) {
        means[l] = tail ? means[l] : dm;  // a tail's are recomputed from its mean and log scale below
        log_scales[l] = tail ? log_scales[l] : ds;
      }
    }
  }
  if (!any_tail) return;
  for (int64_t k = 0; k < K; ++k) {
#pragma omp simd
    for (int64_t p = 0; p < m; ++p) {
      const int64_t l = k * kPixels + p;
      const bool tail = tails[l] != M(0);
      M log_p, mass, dm, ds;
      logistic_mixture::tail_component<VMath>(load<M>(x[p]), means[l], log_scales[l], log_p, mass, dm, ds);
      v[l] = tail ? (kLinear ? w[l] * mass : (w[l] - norm[p]) + log_p) : v[l];
      if constexpr (kDerivatives) {
        means[l] = tail ? dm : means[l];
        log_scales[l] = tail ? ds : log_scales[l];
      }
    }
  }
}

// The lanes' sums over the K rows of v, and whether any lies below kMinLinear (or is NaN), where
// the linear sums lose digits: the block is then taken again in logs.
template <typename M>
__attribute__((always_inline)) inline bool block_sums(const M* v, int64_t m, int64_t K, M* sum) {
  // Terms below the smallest normal are flushed (FlushDenormals): beside a sum of 1e-28 or more
  // (1e-280 in double) they are below its rounding.
  const M kMinLinear = M(sizeof(M) == 8 ? 1e-280 : 1e-28);
#pragma omp simd
  for (int64_t p = 0; p < m; ++p) sum[p] = M(0);
  for (int64_t k = 0; k < K; ++k) {
#pragma omp simd
    for (int64_t p = 0; p < m; ++p) sum[p] += v[k * kPixels + p];
  }
  int small = 0;
#pragma omp simd reduction(| : small)
  for (int64_t p = 0; p < m; ++p) small |= !(sum[p] >= kMinLinear);
  return small != 0;
}

// y <= 0 floored where exp(y) would be subnormal (see exp_neg_abs in the header): the terms of a
// logsumexp and the responsibilities that small change nothing, and subnormals are slow.
template <typename M>
__attribute__((always_inline)) inline M floored(M y) {
  const M floor = M(sizeof(M) == 8 ? -708 : -87);
  return y < floor ? floor : y;
}

// logsumexp over the K rows of a block's lanes, per lane. With kShares, also each term's share of
// its lane's sum, exp(v - logsumexp), into shares (v itself allowed): the softmax weights that the
// linear sums and the backward need, from the exponentials the sum took rather than K more.
template <bool kShares, typename M>
__attribute__((always_inline)) inline void block_logsumexp(const M* v, int64_t m, int64_t K, M* out, M* shares) {
  M top[kPixels], sum[kPixels];
#pragma omp simd
  for (int64_t p = 0; p < m; ++p) top[p] = v[p];
  for (int64_t k = 1; k < K; ++k) {
#pragma omp simd
    for (int64_t p = 0; p < m; ++p) top[p] = v[k * kPixels + p] > top[p] ? v[k * kPixels + p] : top[p];
  }
#pragma omp simd
  for (int64_t p = 0; p < m; ++p) sum[p] = M(0);
  for (int64_t k = 0; k < K; ++k) {
#pragma omp simd
    for (int64_t p = 0; p < m; ++p) {
      const M e = vexp_nonpositive(floored(v[k * kPixels + p] - top[p]));
      if constexpr (kShares) shares[k * kPixels + p] = e;
      sum[p] += e;
    }
  }
#pragma omp simd
  for (int64_t p = 0; p < m; ++p) {
    // Every term -inf (a pixel no component can give): -inf, not the NaN of -inf - -inf.
    out[p] = top[p] == -std::numeric_limits<M>::infinity() ? top[p] : top[p] + VMath::log(sum[p]);
  }
  if constexpr (kShares) {
#pragma omp simd
    for (int64_t p = 0; p < m; ++p) sum[p] = M(1) / sum[p];
    for (int64_t k = 0; k < K; ++k) {
#pragma omp simd
      for (int64_t p = 0; p < m; ++p) shares[k * kPixels + p] *= sum[p];
    }
  }
}

template <typename T, typename X>
AEVB_SIMD double forward_chunk(const X* x, const T* logits, const T* means, const T* log_scales, int64_t n, int64_t K,
                               std::vector<math_t<T>>& scratch) {
  using M = math_t<T>;
  const FlushDenormals flush;  // see block_sums
  M* w = scratch.data();
  M* mb = w + K * kPixels;
  M* sb = mb + K * kPixels;
  M* v = sb + K * kPixels;
  M* weights = v + K * kPixels;
  M* tails = weights + K * kPixels;
  double acc = 0;
  for (int64_t first = 0; first < n; first += kPixels) {
    const int64_t m = n - first < kPixels ? n - first : kPixels, at = first * K;
    M joint[kPixels], norm[kPixels];
    block_rows(logits + at, m, K, w);
    block_rows(means + at, m, K, mb);
    block_rows(log_scales + at, m, K, sb);
    block_logsumexp<true>(w, m, K, norm, weights);
    block_components<true, false>(x + first, m, K, weights, norm, mb, sb, v, tails);
    if (!block_sums(v, m, K, joint)) {
#pragma omp simd
      for (int64_t p = 0; p < m; ++p) joint[p] = VMath::log(joint[p]);
    } else {
      block_components<false, false>(x + first, m, K, w, norm, mb, sb, v, tails);
      block_logsumexp<false>(v, m, K, joint, static_cast<M*>(nullptr));
    }
    for (int64_t p = 0; p < m; ++p) acc += static_cast<double>(joint[p]);
  }
  return acc;
}

template <typename T, typename X>
AEVB_SIMD void backward_chunk(math_t<T> g, const X* x, const T* logits, const T* means, const T* log_scales,
                              T* grad_logits, T* grad_means, T* grad_log_scales, int64_t n, int64_t K,
                              std::vector<math_t<T>>& scratch) {
  using M = math_t<T>;
  const FlushDenormals flush;  // see block_sums
  M* w = scratch.data();
  M* dm = w + K * kPixels;   // the means, then their derivatives
  M* ds = dm + K * kPixels;  // the log scales, then theirs
  M* v = ds + K * kPixels;   // the joint terms, then the responsibilities
  M* weights = v + K * kPixels;
  M* tails = weights + K * kPixels;
  for (int64_t first = 0; first < n; first += kPixels) {
    const int64_t m = n - first < kPixels ? n - first : kPixels, at = first * K;
    M sum[kPixels], norm[kPixels];
    block_rows(logits + at, m, K, w);
    block_rows(means + at, m, K, dm);
    block_rows(log_scales + at, m, K, ds);
    block_logsumexp<true>(w, m, K, norm, weights);
    block_components<true, true>(x + first, m, K, weights, norm, dm, ds, v, tails);
    if (!block_sums(v, m, K, sum)) {
#pragma omp simd
      for (int64_t p = 0; p < m; ++p) sum[p] = M(1) / sum[p];
      for (int64_t k = 0; k < K; ++k) {
#pragma omp simd
        for (int64_t p = 0; p < m; ++p) v[k * kPixels + p] *= sum[p];
      }
    } else {
      block_rows(means + at, m, K, dm);
      block_rows(log_scales + at, m, K, ds);
      block_components<false, true>(x + first, m, K, w, norm, dm, ds, v, tails);
      block_logsumexp<true>(v, m, K, sum, v);
    }
    // d log p / d logit_k = responsibility_k - weight_k; the component's own terms are its
    // responsibility times its log P's derivatives.
    for (int64_t k = 0; k < K; ++k) {
#pragma omp simd
      for (int64_t p = 0; p < m; ++p) {
        const int64_t i = at + p * K + k, l = k * kPixels + p;
        const M r = g * v[l];
        grad_logits[i] = store<T>(r - g * weights[l]);
        grad_means[i] = store<T>(r * dm[l]);
        grad_log_scales[i] = store<T>(r * ds[l]);
      }
    }
  }
}

}  // namespace

void discretized_logistic_mixture_forward(DType t, DType tx, const void* x, const void* logit_probs, const void* means,
                                          const void* log_scales, void* log_prob, int64_t N, int64_t Nx, int64_t D,
                                          int64_t K, int threads) {
  dispatch_likelihood<Types>(t, tx, N, Nx, [&](auto tag, auto xtag) {
    using T = typename decltype(tag)::type;
    using X = typename decltype(xtag)::type;
    const X* x_ = static_cast<const X*>(x);
    const T* l = static_cast<const T*>(logit_probs);
    const T* m = static_cast<const T*>(means);
    const T* s = static_cast<const T*>(log_scales);
    reduce_rows(N, D, 1, static_cast<math_t<T>*>(log_prob), threads_for(N * D * K, threads),
                [&](int64_t row, int64_t begin, int64_t end, double* partial) {
                  thread_local std::vector<math_t<T>> scratch;
                  scratch.resize(static_cast<size_t>(6 * K * kPixels));
                  const int64_t at = (row * D + begin) * K;
                  partial[0] =
                      forward_chunk<T, X>(x_ + (row % Nx) * D + begin, l + at, m + at, s + at, end - begin, K, scratch);
                });
  });
}

void discretized_logistic_mixture_backward(DType t, DType tx, const void* grad_log_prob, const void* x,
                                           const void* logit_probs, const void* means, const void* log_scales,
                                           void* grad_logit_probs, void* grad_means, void* grad_log_scales, int64_t N,
                                           int64_t Nx, int64_t D, int64_t K, int threads) {
  dispatch_likelihood<Types>(t, tx, N, Nx, [&](auto tag, auto xtag) {
    using T = typename decltype(tag)::type;
    using X = typename decltype(xtag)::type;
    const math_t<T>* g = static_cast<const math_t<T>*>(grad_log_prob);
    const X* x_ = static_cast<const X*>(x);
    const T* l = static_cast<const T*>(logit_probs);
    const T* m = static_cast<const T*>(means);
    const T* s = static_cast<const T*>(log_scales);
    T* gl = static_cast<T*>(grad_logit_probs);
    T* gm = static_cast<T*>(grad_means);
    T* gs = static_cast<T*>(grad_log_scales);
    for_each_chunk(N, D, threads_for(N * D * K, threads), [&](int64_t row, int64_t begin, int64_t end) {
      thread_local std::vector<math_t<T>> scratch;
      scratch.resize(static_cast<size_t>(6 * K * kPixels));
      const int64_t at = (row * D + begin) * K;
      backward_chunk<T, X>(g[row], x_ + (row % Nx) * D + begin, l + at, m + at, s + at, gl + at, gm + at, gs + at,
                           end - begin, K, scratch);
    });
  });
}

}  // namespace aevb::cpu
