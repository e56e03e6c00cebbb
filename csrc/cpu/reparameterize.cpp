// Reparameterized sampling with the Gaussian KL term, forward and backward (docs/paper.md, eqs. 6-7
// and Appendix B):
//   z_l = mu + sigma * eps_l,  sigma = exp(logvar / 2),  eps_l ~ N(0, I) from Philox
//   analytic:  KL = 1/2 sum_j (mu^2 + sigma^2 - 1 - logvar)
//   mc:        log q(z_l|x) - log p(z_l) = 1/2 sum_j (z_l^2 - eps_l^2 - logvar)
// The backward regenerates eps from (seed, offset) instead of reading a stored copy. seed points to
// (key, first, rows): these B rows are rows first.. of a batch of `rows` rows, and eps[l, b, j] is
// randn(key, (l*rows + first + b)*Z + j), the noise one call on the whole batch would draw, so
// data-parallel ranks that each hold a slice of a batch draw together what one process would.
#include <cstdint>

#include "kernels.h"
#include "noise.h"
#include "parallel.h"

namespace aevb::cpu {
namespace {

// One unit of `rows` rows of w latent units each, contiguous in memory and in the noise's counters
// (whole rows, or one chunk of one long row): writes z for every sample and each row's share of
// its KL terms (partial[r * width], width 1; or partial[r * width + l] per sample when mc, width L).
template <typename T>
AEVB_SIMD void forward_block(const T* mu, const T* logvar, T* z, int64_t rows, int64_t w, int64_t L,
                             int64_t sample_stride, uint64_t seed, uint64_t offset, uint64_t noise_stride, bool mc,
                             int64_t width, double* partial) {
  using M = math_t<T>;
  const int64_t n = rows * w;
  M m[kChunk], v[kChunk], s[kChunk];
  float eps[kChunk];
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    m[i] = load<M>(mu[i]);
    v[i] = load<M>(logvar[i]);
    s[i] = vexp(v[i] * M(0.5));
  }
  if (!mc) {
    for (int64_t r = 0; r < rows; ++r) {
      const M *mr = m + r * w, *vr = v + r * w, *sr = s + r * w;
      double acc = 0;
#pragma omp simd reduction(+ : acc)
      for (int64_t i = 0; i < w; ++i) acc += static_cast<double>(mr[i] * mr[i] + sr[i] * sr[i] - M(1) - vr[i]);
      partial[r * width] = 0.5 * acc;
    }
  }
  for (int64_t l = 0; l < L; ++l) {
    normal_block(seed, offset + static_cast<uint64_t>(l) * noise_stride, n, eps);
    T* zl = z + l * sample_stride;
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) zl[i] = store<T>(m[i] + s[i] * M(eps[i]));
    if (!mc) continue;
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t at = r * w;
      double acc = 0;
#pragma omp simd reduction(+ : acc)
      for (int64_t i = at; i < at + w; ++i) {
        const M e = eps[i], zi = m[i] + s[i] * e;
        acc += static_cast<double>(zi * zi - e * e - v[i]);
      }
      partial[r * width + l] = 0.5 * acc;
    }
  }
}

// One unit of the backward, cut as forward_block's: grad_kl holds the rows' KL gradients
// (analytic) or their per-sample gradients at stride B (mc). d/dlogvar is assembled as
// s/2 (g_kl s + sum_l g_l eps_l) minus the constant terms, with sigma factored out: g_kl s^2 and
// g_l s eps_l summed apart would meet as inf - inf once sigma^2 overflows (logvar > 88).
template <typename T, typename R>
AEVB_SIMD void backward_block(const T* grad_z, const R* grad_kl, const T* mu, const T* logvar, T* grad_mu,
                              T* grad_logvar, int64_t rows, int64_t w, int64_t L, int64_t B, int64_t sample_stride,
                              uint64_t seed, uint64_t offset, uint64_t noise_stride, bool mc, bool stl) {
  using M = math_t<T>;
  const int64_t n = rows * w;
  M m[kChunk], s[kChunk], stl_factor[kChunk], gm[kChunk], ge[kChunk];
  float eps[kChunk];
  // One loop over the whole unit, with nothing row- or stl-dependent in it: GCC left the per-row
  // loop that also chose the stl factor scalar (the backward took 1.7x the forward).
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    m[i] = load<M>(mu[i]);
    s[i] = vexp(load<M>(logvar[i]) * M(0.5));
  }
  // sc: the factor of eps in d kl / d z = m + sc eps, sigma (the z in it) less 1 / sigma with stl.
  const M* sc = s;
  if (stl) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) stl_factor[i] = s[i] - M(1) / s[i];
    sc = stl_factor;
  }
  for (int64_t r = 0; r < rows; ++r) {
    const M g_analytic = mc || !grad_kl ? M(0) : M(grad_kl[r]);
#pragma omp simd
    for (int64_t i = r * w; i < (r + 1) * w; ++i) {
      // d KL / d mu = mu
      gm[i] = g_analytic * m[i];
      ge[i] = M(0);
    }
  }
  for (int64_t l = 0; l < L; ++l) {
    normal_block(seed, offset + static_cast<uint64_t>(l) * noise_stride, n, eps);
    const T* gz = grad_z ? grad_z + l * sample_stride : nullptr;
    for (int64_t r = 0; r < rows; ++r) {
      // d/d z of the mc term is z (z - eps / sigma with stl); its direct d/d logvar is -1/2 (none with stl).
      const M g_mc = mc && grad_kl ? M(grad_kl[l * B + r]) : M(0);
#pragma omp simd
      for (int64_t i = r * w; i < (r + 1) * w; ++i) {
        const M e = eps[i];
        const M g = (gz ? load<M>(gz[i]) : M(0)) + g_mc * (m[i] + sc[i] * e);
        // dz/dmu = 1,  dz/dlogvar = sigma * eps / 2
        gm[i] += g;
        ge[i] += g * e;
      }
    }
  }
  for (int64_t r = 0; r < rows; ++r) {
    const M g_analytic = mc || !grad_kl ? M(0) : M(grad_kl[r]);
    M g_mc_sum = 0;
    for (int64_t l = 0; mc && !stl && grad_kl && l < L; ++l) g_mc_sum += M(grad_kl[l * B + r]);
#pragma omp simd
    for (int64_t i = r * w; i < (r + 1) * w; ++i) {
      // d KL / d logvar = (sigma^2 - 1) / 2, the samples' sigma eps / 2 and -1/2 (mc)
      grad_mu[i] = store<T>(gm[i]);
      grad_logvar[i] = store<T>(M(0.5) * s[i] * (g_analytic * s[i] + ge[i]) - M(0.5) * (g_analytic + g_mc_sum));
    }
  }
}

// The noise of the B rows: the key, the offset of row 0 and the offset between samples.
struct Noise {
  uint64_t key, first, stride;
  Noise(const int64_t* seed, int64_t Z)
      : key(static_cast<uint64_t>(seed[0])),
        first(static_cast<uint64_t>(seed[1]) * static_cast<uint64_t>(Z)),
        stride(static_cast<uint64_t>(seed[2]) * static_cast<uint64_t>(Z)) {}
};

}  // namespace

void reparameterize_forward(DType t, const void* mu, const void* logvar, const int64_t* seed, void* z, void* kl,
                            int64_t B, int64_t Z, int64_t L, bool mc, int threads) {
  const Noise noise(seed, Z);
  dispatch_float<Types>(t, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using R = math_t<T>;
    const T* mu_ = static_cast<const T*>(mu);
    const T* lv_ = static_cast<const T*>(logvar);
    T* z_ = static_cast<T*>(z);
    const int64_t stride = B * Z;
    const int64_t width = mc ? L : 1;
    reduce_row_groups(B, Z, rows_per_unit(Z), width, static_cast<R*>(kl), threads_for(B * Z * (L + 1), threads),
                      [&](int64_t b, int64_t last, int64_t begin, int64_t end, double* partial) {
                        const int64_t at = b * Z + begin;
                        forward_block<T>(mu_ + at, lv_ + at, z_ + at, last - b, end - begin, L, stride, noise.key,
                                         noise.first + static_cast<uint64_t>(at), noise.stride, mc, width, partial);
                      });
  });
}

void reparameterize_backward(DType t, const void* grad_z, const void* grad_kl, const void* mu, const void* logvar,
                             const int64_t* seed, void* grad_mu, void* grad_logvar, int64_t B, int64_t Z, int64_t L,
                             bool mc, bool stl, int threads) {
  const Noise noise(seed, Z);
  dispatch_float<Types>(t, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using R = math_t<T>;
    const T* gz = static_cast<const T*>(grad_z);
    const R* gkl = static_cast<const R*>(grad_kl);
    const T* mu_ = static_cast<const T*>(mu);
    const T* lv_ = static_cast<const T*>(logvar);
    T* gm = static_cast<T*>(grad_mu);
    T* gv = static_cast<T*>(grad_logvar);
    const int64_t stride = B * Z;
    for_each_row_group(B, Z, rows_per_unit(Z), threads_for(B * Z * (L + 1), threads),
                       [&](int64_t b, int64_t last, int64_t begin, int64_t end) {
                         const int64_t at = b * Z + begin;
                         backward_block<T, R>(gz ? gz + at : nullptr, gkl ? gkl + b : nullptr, mu_ + at, lv_ + at,
                                              gm + at, gv + at, last - b, end - begin, L, B, stride, noise.key,
                                              noise.first + static_cast<uint64_t>(at), noise.stride, mc, mc && stl);
                       });
  });
}

}  // namespace aevb::cpu
