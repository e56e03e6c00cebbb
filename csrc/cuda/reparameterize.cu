// Reparameterized sampling with the Gaussian KL term on CUDA, forward and backward (docs/paper.md,
// eqs. 6-7 and Appendix B):
//   z_l = mu + sigma * eps_l,  sigma = exp(logvar / 2),  eps_l ~ N(0, I) from Philox
//   analytic:  KL = 1/2 sum_j (mu^2 + sigma^2 - 1 - logvar)
//   mc:        log q(z_l|x) - log p(z_l) = 1/2 sum_j (z_l^2 - eps_l^2 - logvar)
// seed points to (key, first, rows): these B rows are rows first.. of a batch of `rows` rows, and
// eps[l, b, j] = randn(key, (l*rows + first + b)*Z + j) from csrc/common/philox.h, the generator of
// the CPU and Triton kernels; the backward regenerates it instead of reading a stored copy. The
// forward walks the L*B rows of z (row r = l*B + b reads mu[b]).
#include "../common/philox.h"
#include "kernels.h"
#include "rows.cuh"

namespace aevb::cuda {
namespace {

__device__ __forceinline__ float normal_at(uint64_t seed, uint64_t offset) {
  uint32_t w0, w1, w2, w3;
  philox_at(seed, offset, w0, w1, w2, w3);
  return normal_from_words(
      w0, w1, [](float v) { return logf(v); }, [](float v) { return cosf(v); }, [](float v) { return sqrtf(v); });
}

// The noise offset of element 0 of sample l of row b.
__device__ __forceinline__ uint64_t noise_row(const int64_t* seed, int64_t l, int64_t b, int64_t Z) {
  return static_cast<uint64_t>((l * seed[2] + seed[1] + b) * Z);
}

template <typename T, bool ALIGNED>
__global__ void __launch_bounds__(kBlockThreads)
    reparameterize_forward_kernel(const T* __restrict__ mu, const T* __restrict__ logvar,
                                  const int64_t* __restrict__ seed_ptr, T* __restrict__ z, math_t<T>* __restrict__ kl,
                                  int64_t B, int64_t Z, int64_t L, bool mc) {
  using M = math_t<T>;
  constexpr int V = pack_size<T>;
  const uint64_t seed = static_cast<uint64_t>(seed_ptr[0]);
  // Without samples (L = 0) the B rows make the analytic KL alone; with them, the rows of sample 0
  // make it (analytic), or every row makes its own term (mc).
  for_each_row(L > 0 ? L * B : B, [&](int64_t row, bool valid) {
    const bool sums = mc || row < B;
    M acc = 0;
    if (valid) {
      const int64_t at = (row % B) * Z;
      const uint64_t noise = L > 0 ? noise_row(seed_ptr, row / B, row % B, Z) : 0;
      for_each_pack<V>(Z, [&](int64_t j) {
        M m[V], v[V], out[V];
        load_pack<ALIGNED>(mu + at, j, Z, m);
        load_pack<ALIGNED>(logvar + at, j, Z, v);
#pragma unroll
        for (int k = 0; k < V; ++k) {
          const M s = exp_(M(0.5) * v[k]);
          M term = m[k] * m[k] + s * s - M(1) - v[k];
          if (L > 0) {
            const M e = normal_at(seed, noise + static_cast<uint64_t>(j + k));
            out[k] = m[k] + s * e;
            if (mc) term = out[k] * out[k] - e * e - v[k];
          }
          if (sums && in_row<ALIGNED>(j, k, Z)) acc += term;
        }
        if (L > 0) store_pack<ALIGNED>(z + row * Z, j, Z, out);
      });
    }
    acc = row_sum(acc);
    if (valid && sums && threadIdx.x == 0) kl[row] = M(0.5) * acc;
  });
}

template <typename T, bool ALIGNED>
__global__ void __launch_bounds__(kBlockThreads)
    reparameterize_backward_kernel(const T* __restrict__ grad_z, const math_t<T>* __restrict__ grad_kl,
                                   const T* __restrict__ mu, const T* __restrict__ logvar,
                                   const int64_t* __restrict__ seed_ptr, T* __restrict__ grad_mu,
                                   T* __restrict__ grad_logvar, int64_t B, int64_t Z, int64_t L, bool mc, bool stl) {
  using M = math_t<T>;
  constexpr int V = pack_size<T>;
  const uint64_t seed = static_cast<uint64_t>(seed_ptr[0]);
  for_each_row(B, [&](int64_t b, bool valid) {
    if (!valid) return;
    const int64_t at = b * Z;
    const M g_analytic = mc || grad_kl == nullptr ? M(0) : grad_kl[b];
    for_each_pack<V>(Z, [&](int64_t j) {
      // sc: the factor of eps in d kl / d z = m + sc eps, sigma less 1 / sigma with stl (as on the CPU).
      M m[V], v[V], s[V], sc[V], gm[V], ge[V];
      load_pack<ALIGNED>(mu + at, j, Z, m);
      load_pack<ALIGNED>(logvar + at, j, Z, v);
#pragma unroll
      for (int k = 0; k < V; ++k) {
        s[k] = exp_(M(0.5) * v[k]);
        sc[k] = stl ? s[k] - M(1) / s[k] : s[k];
        gm[k] = g_analytic * m[k];  // d KL / d mu = mu
        ge[k] = M(0);
      }
      M g_mc_sum = 0;
      for (int64_t l = 0; l < L; ++l) {
        const int64_t row = l * B + b;
        const uint64_t noise = noise_row(seed_ptr, l, b, Z);
        // d/dz of the mc term is z (z - eps / sigma with stl); its direct d/dlogvar is -1/2 (none with stl).
        const M g_mc = mc && grad_kl != nullptr ? grad_kl[row] : M(0);
        g_mc_sum += stl ? M(0) : g_mc;
        M gz[V];
        if (grad_z != nullptr) {
          load_pack<ALIGNED>(grad_z + row * Z, j, Z, gz);
        } else {
#pragma unroll
          for (int k = 0; k < V; ++k) gz[k] = M(0);
        }
#pragma unroll
        for (int k = 0; k < V; ++k) {
          const M e = normal_at(seed, noise + static_cast<uint64_t>(j + k));
          const M g = gz[k] + g_mc * (m[k] + sc[k] * e);
          // dz/dmu = 1,  dz/dlogvar = sigma * eps / 2
          gm[k] += g;
          ge[k] += g * e;
        }
      }
      // d KL / d logvar = (sigma^2 - 1) / 2, with sigma factored out as on the CPU
      // (csrc/cpu/reparameterize.cpp): no inf - inf once sigma^2 overflows.
#pragma unroll
      for (int k = 0; k < V; ++k) {
        ge[k] = M(0.5) * s[k] * (g_analytic * s[k] + ge[k]) - M(0.5) * (g_analytic + g_mc_sum);
      }
      store_pack<ALIGNED>(grad_mu + at, j, Z, gm);
      store_pack<ALIGNED>(grad_logvar + at, j, Z, ge);
    });
  });
}

}  // namespace

void reparameterize_forward(DType t, const void* mu, const void* logvar, const int64_t* seed, void* z, void* kl,
                            int64_t B, int64_t Z, int64_t L, bool mc, int device, void* stream) {
  if (mc && L == 0) return;  // kl is [0, B]: nothing to write
  dispatch_float<Types>(t, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const auto* m = static_cast<const T*>(mu);
    const auto* v = static_cast<const T*>(logvar);
    auto* z_ = static_cast<T*>(z);
    auto* kl_ = static_cast<math_t<T>*>(kl);
    launch_rows<pack_size<T>>(
        "reparameterize_forward", device, stream, L > 0 ? L * B : B, Z,
        [&](auto aligned, dim3 grid, dim3 block, cudaStream_t s) {
          reparameterize_forward_kernel<T, decltype(aligned)::value>
              <<<grid, block, 0, s>>>(m, v, seed, z_, kl_, B, Z, L, mc);
        },
        m, v, static_cast<const T*>(z_));
  });
}

void reparameterize_backward(DType t, const void* grad_z, const void* grad_kl, const void* mu, const void* logvar,
                             const int64_t* seed, void* grad_mu, void* grad_logvar, int64_t B, int64_t Z, int64_t L,
                             bool mc, bool stl, int device, void* stream) {
  dispatch_float<Types>(t, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const auto* gz = static_cast<const T*>(grad_z);
    const auto* gkl = static_cast<const math_t<T>*>(grad_kl);
    const auto* m = static_cast<const T*>(mu);
    const auto* v = static_cast<const T*>(logvar);
    auto* gm = static_cast<T*>(grad_mu);
    auto* gv = static_cast<T*>(grad_logvar);
    launch_rows<pack_size<T>>(
        "reparameterize_backward", device, stream, B, Z,
        [&](auto aligned, dim3 grid, dim3 block, cudaStream_t s) {
          reparameterize_backward_kernel<T, decltype(aligned)::value>
              <<<grid, block, 0, s>>>(gz, gkl, m, v, seed, gm, gv, B, Z, L, mc, mc && stl);
        },
        gz, m, v, static_cast<const T*>(gm), static_cast<const T*>(gv));
  });
}

}  // namespace aevb::cuda
