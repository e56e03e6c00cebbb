// Laplace log-likelihood on CUDA, s = logscale: log p(x|loc, s) = -sum_d (log 2 + s + |x - loc| exp(-s)),
// and its backward, recomputed from x, loc and s; the per-element math is csrc/common/laplace.h's.
// Row n of loc and logscale reads row n % Nx of the targets.
#include "../common/laplace.h"
#include "kernels.h"
#include "rows.cuh"

namespace aevb::cuda {
namespace {

template <typename T, typename X, bool ALIGNED>
__global__ void __launch_bounds__(kBlockThreads)
    laplace_forward_kernel(const X* __restrict__ x, const T* __restrict__ loc, const T* __restrict__ logscale,
                           math_t<T>* __restrict__ log_prob, int64_t N, int64_t Nx, int64_t D) {
  using M = math_t<T>;
  constexpr int V = pack_size<T>;
  for_each_row(N, [&](int64_t row, bool valid) {
    CompensatedSum<M> acc;  // see rows.cuh: thousands of terms a thread on wide rows
    if (valid) {
      const X* x_row = x + (row % Nx) * D;
      const T* m_row = loc + row * D;
      const T* s_row = logscale + row * D;
      for_each_pack<V>(D, [&](int64_t j) {
        M t[V], m[V], s[V];
        load_pack<ALIGNED>(x_row, j, D, t);
        load_pack<ALIGNED>(m_row, j, D, m);
        load_pack<ALIGNED>(s_row, j, D, s);
#pragma unroll
        for (int k = 0; k < V; ++k) {
          const M term = laplace::term(t[k] - m[k], s[k], exp_(M(-0.5) * s[k]));
          if (in_row<ALIGNED>(j, k, D)) acc.add(term);
        }
      });
    }
    const M total = row_sum(acc.value());
    if (valid && threadIdx.x == 0) log_prob[row] = -total;
  });
}

template <typename T, typename X, bool ALIGNED>
__global__ void __launch_bounds__(kBlockThreads)
    laplace_backward_kernel(const math_t<T>* __restrict__ grad_log_prob, const X* __restrict__ x,
                            const T* __restrict__ loc, const T* __restrict__ logscale, T* __restrict__ grad_loc,
                            T* __restrict__ grad_logscale, int64_t N, int64_t Nx, int64_t D) {
  using M = math_t<T>;
  constexpr int V = pack_size<T>;
  for_each_row(N, [&](int64_t row, bool valid) {
    if (!valid) return;
    const M g = grad_log_prob[row];
    const X* x_row = x + (row % Nx) * D;
    const int64_t at = row * D;
    for_each_pack<V>(D, [&](int64_t j) {
      M t[V], m[V], s[V], gm[V], gs[V];
      load_pack<ALIGNED>(x_row, j, D, t);
      load_pack<ALIGNED>(loc + at, j, D, m);
      load_pack<ALIGNED>(logscale + at, j, D, s);
#pragma unroll
      for (int k = 0; k < V; ++k) {
        const M d = t[k] - m[k], e = exp_(M(-0.5) * s[k]);
        gm[k] = laplace::grad_loc(g, d, e);
        gs[k] = laplace::grad_logscale(g, d, e);
      }
      store_pack<ALIGNED>(grad_loc + at, j, D, gm);
      store_pack<ALIGNED>(grad_logscale + at, j, D, gs);
    });
  });
}

}  // namespace

void laplace_forward(DType t, DType tx, const void* x, const void* loc, const void* logscale, void* log_prob, int64_t N,
                     int64_t Nx, int64_t D, int device, void* stream) {
  dispatch_likelihood<Types>(t, tx, N, Nx, [&](auto tag, auto xtag) {
    using T = typename decltype(tag)::type;
    using X = typename decltype(xtag)::type;
    const auto* x_ = static_cast<const X*>(x);
    const auto* m = static_cast<const T*>(loc);
    const auto* s = static_cast<const T*>(logscale);
    auto* out = static_cast<math_t<T>*>(log_prob);
    launch_rows<pack_size<T>>(
        "laplace_forward", device, stream, N, D,
        [&](auto aligned, dim3 grid, dim3 block, cudaStream_t st) {
          laplace_forward_kernel<T, X, decltype(aligned)::value><<<grid, block, 0, st>>>(x_, m, s, out, N, Nx, D);
        },
        x_, m, s);
  });
}

void laplace_backward(DType t, DType tx, const void* grad_log_prob, const void* x, const void* loc,
                      const void* logscale, void* grad_loc, void* grad_logscale, int64_t N, int64_t Nx, int64_t D,
                      int device, void* stream) {
  dispatch_likelihood<Types>(t, tx, N, Nx, [&](auto tag, auto xtag) {
    using T = typename decltype(tag)::type;
    using X = typename decltype(xtag)::type;
    const auto* g = static_cast<const math_t<T>*>(grad_log_prob);
    const auto* x_ = static_cast<const X*>(x);
    const auto* m = static_cast<const T*>(loc);
    const auto* s = static_cast<const T*>(logscale);
    auto* gm = static_cast<T*>(grad_loc);
    auto* gs = static_cast<T*>(grad_logscale);
    launch_rows<pack_size<T>>(
        "laplace_backward", device, stream, N, D,
        [&](auto aligned, dim3 grid, dim3 block, cudaStream_t st) {
          laplace_backward_kernel<T, X, decltype(aligned)::value>
              <<<grid, block, 0, st>>>(g, x_, m, s, gm, gs, N, Nx, D);
        },
        x_, m, s, static_cast<const T*>(gm), static_cast<const T*>(gs));
  });
}

}  // namespace aevb::cuda
