// The Bernoulli log-likelihood from logits on CUDA (docs/paper.md, Bernoulli MLP decoder):
//   log p(x|z) = sum_d x a - softplus(a)
// and its backward d/da = g (x - sigmoid(a)), g the row's upstream gradient, recomputed from a and
// x; and the continuous Bernoulli's, the same terms plus the normalizer log C(a), through the same
// kernels. The per-element math, in stable form, is csrc/common/bernoulli.h's and
// continuous_bernoulli.h's. Row n of the logits reads row n % Nx of the targets (the L samples of
// one batch share them).
#include "../common/bernoulli.h"
#include "../common/continuous_bernoulli.h"
#include "kernels.h"
#include "rows.cuh"

namespace aevb::cuda {
namespace {

template <bool CONTINUOUS, typename T, typename X, bool ALIGNED>
__global__ void __launch_bounds__(kBlockThreads)
    bernoulli_forward_kernel(const T* __restrict__ logits, const X* __restrict__ x, math_t<T>* __restrict__ log_prob,
                             int64_t N, int64_t Nx, int64_t D) {
  using M = math_t<T>;
  constexpr int V = pack_size<T>;
  for_each_row(N, [&](int64_t row, bool valid) {
    CompensatedSum<M> acc;  // see rows.cuh: thousands of terms a thread on wide rows
    if (valid) {
      const T* a_row = logits + row * D;
      const X* x_row = x + (row % Nx) * D;
      for_each_pack<V>(D, [&](int64_t j) {
        M a[V], t[V];
        load_pack<ALIGNED>(a_row, j, D, a);
        load_pack<ALIGNED>(x_row, j, D, t);
#pragma unroll
        for (int k = 0; k < V; ++k) {
          const M e = exp_(a[k] < M(0) ? a[k] : -a[k]);
          M term;
          if constexpr (CONTINUOUS) {
            term = continuous_bernoulli::term(a[k], t[k], log_(continuous_bernoulli::ratio(a[k], e)));
          } else {
            term = bernoulli::term(a[k], t[k], log1p_(e));
          }
          if (in_row<ALIGNED>(j, k, D)) acc.add(term);
        }
      });
    }
    const M total = row_sum(acc.value());
    if (valid && threadIdx.x == 0) log_prob[row] = total;
  });
}

template <bool CONTINUOUS, typename T, typename X, bool ALIGNED>
__global__ void __launch_bounds__(kBlockThreads)
    bernoulli_backward_kernel(const math_t<T>* __restrict__ grad_log_prob, const T* __restrict__ logits,
                              const X* __restrict__ x, T* __restrict__ grad, int64_t N, int64_t Nx, int64_t D) {
  using M = math_t<T>;
  constexpr int V = pack_size<T>;
  for_each_row(N, [&](int64_t row, bool valid) {
    if (!valid) return;
    const M g = grad_log_prob[row];
    const T* a_row = logits + row * D;
    const X* x_row = x + (row % Nx) * D;
    T* grad_row = grad + row * D;
    for_each_pack<V>(D, [&](int64_t j) {
      M a[V], t[V], out[V];
      load_pack<ALIGNED>(a_row, j, D, a);
      load_pack<ALIGNED>(x_row, j, D, t);
#pragma unroll
      for (int k = 0; k < V; ++k) {
        const M e = exp_(a[k] < M(0) ? a[k] : -a[k]);
        out[k] = CONTINUOUS ? continuous_bernoulli::grad(g, a[k], t[k], e) : bernoulli::grad(g, a[k], t[k], e);
      }
      store_pack<ALIGNED>(grad_row, j, D, out);
    });
  });
}

template <bool CONTINUOUS>
void forward(const char* name, DType t, DType tx, const void* logits, const void* x, void* log_prob, int64_t N,
             int64_t Nx, int64_t D, int device, void* stream) {
  dispatch_likelihood<Types>(t, tx, N, Nx, [&](auto tag, auto xtag) {
    using T = typename decltype(tag)::type;
    using X = typename decltype(xtag)::type;
    const auto* a = static_cast<const T*>(logits);
    const auto* x_ = static_cast<const X*>(x);
    auto* out = static_cast<math_t<T>*>(log_prob);
    launch_rows<pack_size<T>>(
        name, device, stream, N, D,
        [&](auto aligned, dim3 grid, dim3 block, cudaStream_t s) {
          bernoulli_forward_kernel<CONTINUOUS, T, X, decltype(aligned)::value>
              <<<grid, block, 0, s>>>(a, x_, out, N, Nx, D);
        },
        a, x_);
  });
}

template <bool CONTINUOUS>
void backward(const char* name, DType t, DType tx, const void* grad_log_prob, const void* logits, const void* x,
              void* grad, int64_t N, int64_t Nx, int64_t D, int device, void* stream) {
  dispatch_likelihood<Types>(t, tx, N, Nx, [&](auto tag, auto xtag) {
    using T = typename decltype(tag)::type;
    using X = typename decltype(xtag)::type;
    const auto* g = static_cast<const math_t<T>*>(grad_log_prob);
    const auto* a = static_cast<const T*>(logits);
    const auto* x_ = static_cast<const X*>(x);
    auto* out = static_cast<T*>(grad);
    launch_rows<pack_size<T>>(
        name, device, stream, N, D,
        [&](auto aligned, dim3 grid, dim3 block, cudaStream_t s) {
          bernoulli_backward_kernel<CONTINUOUS, T, X, decltype(aligned)::value>
              <<<grid, block, 0, s>>>(g, a, x_, out, N, Nx, D);
        },
        a, x_, static_cast<const T*>(out));
  });
}

}  // namespace

// The CUDA kernels report no targets outside [0, 1]: counting them would cost a device sync.
int64_t bernoulli_forward(DType t, DType tx, const void* logits, const void* x, void* log_prob, int64_t N, int64_t Nx,
                          int64_t D, int device, void* stream) {
  forward<false>("bernoulli_forward", t, tx, logits, x, log_prob, N, Nx, D, device, stream);
  return 0;
}

void bernoulli_backward(DType t, DType tx, const void* grad_log_prob, const void* logits, const void* x, void* grad,
                        int64_t N, int64_t Nx, int64_t D, int device, void* stream) {
  backward<false>("bernoulli_backward", t, tx, grad_log_prob, logits, x, grad, N, Nx, D, device, stream);
}

int64_t continuous_bernoulli_forward(DType t, DType tx, const void* logits, const void* x, void* log_prob, int64_t N,
                                     int64_t Nx, int64_t D, int device, void* stream) {
  forward<true>("continuous_bernoulli_forward", t, tx, logits, x, log_prob, N, Nx, D, device, stream);
  return 0;
}

void continuous_bernoulli_backward(DType t, DType tx, const void* grad_log_prob, const void* logits, const void* x,
                                   void* grad, int64_t N, int64_t Nx, int64_t D, int device, void* stream) {
  backward<true>("continuous_bernoulli_backward", t, tx, grad_log_prob, logits, x, grad, N, Nx, D, device, stream);
}

}  // namespace aevb::cuda
