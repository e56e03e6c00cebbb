// The Laplace likelihood's per-element math, shared by the CPU and CUDA kernels (the exponential is
// left to each backend: they hand in e = exp(-s/2)). With d = x - loc and s = logscale:
//   log p(x|loc, s) = -sum_d (log 2 + s + |d| exp(-s)),  |d| exp(-s) made as (|d| e) e
//   d/dloc = g sign(d) exp(-s),  d/ds = g (|d| exp(-s) - 1),  d/dx = -d/dloc
// (|d| e) e overflows only where |d| exp(-s) lies past the float range, and d == 0 gives 0 (not
// 0 * inf = NaN) for every s, in the value and d/dloc; a NaN d stays NaN in the value and both gradients.
#pragma once

#include "philox.h"  // AEVB_HD

namespace aevb::laplace {

constexpr double kLog2 = 0.69314718055994530941723212145818;

template <typename M>
AEVB_HD M scaled_residual(M d, M e) {
  return d == M(0) ? M(0) : ((d < M(0) ? -d : d) * e) * e;
}

// The element's term of -log p.
template <typename M>
AEVB_HD M term(M d, M s, M e) {
  return M(kLog2) + s + scaled_residual(d, e);
}

// sign(d) exp(-s): 0 at d == 0 for every s (the reference's gradient of |d| there; not 0 * inf),
// NaN for a NaN d.
template <typename M>
AEVB_HD M grad_loc(M g, M d, M e) {
  const M sign = d > M(0) ? M(1) : (d < M(0) ? M(-1) : d);
  return d == M(0) ? g * M(0) : g * sign * e * e;
}

template <typename M>
AEVB_HD M grad_logscale(M g, M d, M e) {
  return g * (scaled_residual(d, e) - M(1));
}

}  // namespace aevb::laplace
