// The discretized logistic mixture's log-likelihood on CUDA (Salimans et al. 2017): per row the sum
// over D grey levels of logsumexp_k(log softmax(logit)_k + log P_k(x)), and its backward,
// recomputed from the inputs; the per-component math is csrc/common/discretized_logistic_mixture.h's.
// Values are [N, D, K]: a thread takes a pixel at a time and its K components in turn, with running
// logsumexps (a rescale when the maximum moves); the backward walks the components twice, for the
// sums and then for the gradients, so that no per-component state is kept for any K.
#include "../common/discretized_logistic_mixture.h"
#include "kernels.h"
#include "rows.cuh"

namespace aevb::cuda {
namespace {

struct DeviceMath {
  __device__ static float exp(float x) { return exp_(x); }
  __device__ static double exp(double x) { return exp_(x); }
  __device__ static float exp_nonpositive(float x) { return exp_(x); }
  __device__ static double exp_nonpositive(double x) { return exp_(x); }
  __device__ static float log(float x) { return log_(x); }
  __device__ static double log(double x) { return log_(x); }
  __device__ static float log1p(float x) { return log1p_(x); }
  __device__ static double log1p(double x) { return log1p_(x); }
};

// A running logsumexp: the largest term seen and the sum of exp(term - largest).
template <typename M>
struct LogSumExp {
  M top = -INFINITY, sum = 0;
  __device__ __forceinline__ void add(M v) {
    if (v == -INFINITY) return;  // adds nothing; -inf - -inf would be NaN
    if (v > top) {
      sum = sum * exp_(top - v) + M(1);
      top = v;
    } else {
      sum += exp_(v - top);
    }
  }
  __device__ __forceinline__ M value() const { return top == -INFINITY ? top : top + log_(sum); }
};

// The pixel's logsumexp of its logits (norm), then of its components' (logit - norm) + log P
// (joint, the pixel's log P): the log-softmax taken first, so that huge logits do not absorb log P.
template <typename M, typename T>
__device__ __forceinline__ void pixel_sums(M x, const T* logits, const T* means, const T* log_scales, int64_t at,
                                           int64_t K, M& joint, M& norm) {
  LogSumExp<M> v, w;
  for (int64_t k = 0; k < K; ++k) w.add(load<M>(logits[at + k]));
  norm = w.value();
  for (int64_t k = 0; k < K; ++k) {
    M log_p, dm, ds;
    logistic_mixture::component<DeviceMath>(x, load<M>(means[at + k]), load<M>(log_scales[at + k]), log_p, dm, ds);
    v.add((load<M>(logits[at + k]) - norm) + log_p);
  }
  joint = v.value();
}

template <typename T, typename X>
__global__ void __launch_bounds__(kBlockThreads)
    mixture_forward_kernel(const X* __restrict__ x, const T* __restrict__ logits, const T* __restrict__ means,
                           const T* __restrict__ log_scales, math_t<T>* __restrict__ log_prob, int64_t N, int64_t Nx,
                           int64_t D, int64_t K) {
  using M = math_t<T>;
  for_each_row(N, [&](int64_t row, bool valid) {
    CompensatedSum<M> acc;  // see rows.cuh: thousands of terms a thread on wide rows
    if (valid) {
      const X* x_row = x + (row % Nx) * D;
      for_each_pack<1>(D, [&](int64_t d) {
        M joint, norm;
        pixel_sums(load<M>(x_row[d]), logits, means, log_scales, (row * D + d) * K, K, joint, norm);
        acc.add(joint);
      });
    }
    const M total = row_sum(acc.value());
    if (valid && threadIdx.x == 0) log_prob[row] = total;
  });
}

template <typename T, typename X>
__global__ void __launch_bounds__(kBlockThreads)
    mixture_backward_kernel(const math_t<T>* __restrict__ grad_log_prob, const X* __restrict__ x,
                            const T* __restrict__ logits, const T* __restrict__ means, const T* __restrict__ log_scales,
                            T* __restrict__ grad_logits, T* __restrict__ grad_means, T* __restrict__ grad_log_scales,
                            int64_t N, int64_t Nx, int64_t D, int64_t K) {
  using M = math_t<T>;
  for_each_row(N, [&](int64_t row, bool valid) {
    if (!valid) return;
    const M g = grad_log_prob[row];
    const X* x_row = x + (row % Nx) * D;
    for_each_pack<1>(D, [&](int64_t d) {
      const M xd = load<M>(x_row[d]);
      const int64_t at = (row * D + d) * K;
      M joint, norm;
      pixel_sums(xd, logits, means, log_scales, at, K, joint, norm);
      for (int64_t k = 0; k < K; ++k) {
        M log_p, dm, ds;
        logistic_mixture::component<DeviceMath>(xd, load<M>(means[at + k]), load<M>(log_scales[at + k]), log_p, dm, ds);
        const M weight = load<M>(logits[at + k]) - norm;  // log softmax
        const M r = g * exp_(weight + log_p - joint);     // g times the component's responsibility
        grad_logits[at + k] = store<T>(r - g * exp_(weight));
        grad_means[at + k] = store<T>(r * dm);
        grad_log_scales[at + k] = store<T>(r * ds);
      }
    });
  });
}

}  // namespace

void discretized_logistic_mixture_forward(DType t, DType tx, const void* x, const void* logit_probs, const void* means,
                                          const void* log_scales, void* log_prob, int64_t N, int64_t Nx, int64_t D,
                                          int64_t K, int device, void* stream) {
  dispatch_likelihood<Types>(t, tx, N, Nx, [&](auto tag, auto xtag) {
    using T = typename decltype(tag)::type;
    using X = typename decltype(xtag)::type;
    const auto* x_ = static_cast<const X*>(x);
    const auto* l = static_cast<const T*>(logit_probs);
    const auto* m = static_cast<const T*>(means);
    const auto* s = static_cast<const T*>(log_scales);
    auto* out = static_cast<math_t<T>*>(log_prob);
    launch_rows<1>(
        "discretized_logistic_mixture_forward", device, stream, N, D,
        [&](auto, dim3 grid, dim3 block, cudaStream_t st) {
          mixture_forward_kernel<T, X><<<grid, block, 0, st>>>(x_, l, m, s, out, N, Nx, D, K);
        },
        x_);
  });
}

void discretized_logistic_mixture_backward(DType t, DType tx, const void* grad_log_prob, const void* x,
                                           const void* logit_probs, const void* means, const void* log_scales,
                                           void* grad_logit_probs, void* grad_means, void* grad_log_scales, int64_t N,
                                           int64_t Nx, int64_t D, int64_t K, int device, void* stream) {
  dispatch_likelihood<Types>(t, tx, N, Nx, [&](auto tag, auto xtag) {
    using T = typename decltype(tag)::type;
    using X = typename decltype(xtag)::type;
    const auto* g = static_cast<const math_t<T>*>(grad_log_prob);
    const auto* x_ = static_cast<const X*>(x);
    const auto* l = static_cast<const T*>(logit_probs);
    const auto* m = static_cast<const T*>(means);
    const auto* s = static_cast<const T*>(log_scales);
    auto* gl = static_cast<T*>(grad_logit_probs);
    auto* gm = static_cast<T*>(grad_means);
    auto* gs = static_cast<T*>(grad_log_scales);
    launch_rows<1>(
        "discretized_logistic_mixture_backward", device, stream, N, D,
        [&](auto, dim3 grid, dim3 block, cudaStream_t st) {
          mixture_backward_kernel<T, X><<<grid, block, 0, st>>>(g, x_, l, m, s, gl, gm, gs, N, Nx, D, K);
        },
        x_);
  });
}

}  // namespace aevb::cuda
