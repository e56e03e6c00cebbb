// The Gaussian likelihood's per-element math, shared by the CPU and CUDA kernels (the exponential is
// left to each backend: they hand in e = exp(-s/2)). With d = x - mean and s = logvar:
//   log N(x; mean, exp(s)) = -1/2 sum_d (log 2pi + s + r^2),  r = d exp(-s/2)
//   d/dmean = g r exp(-s/2),  d/ds = g (r^2 - 1) / 2,  d/dx = -d/dmean
// Through the standardized residual r, exp(-s/2) overflows only past s < -177 rather than exp(-s)
// past s < -88, and d == 0 gives r = 0 (not 0 * inf = NaN) for every finite s: a result is infinite
// only where its exact value lies beyond the float range.
#pragma once

#include "philox.h"  // AEVB_HD

namespace aevb::gaussian {

constexpr double kLog2Pi = 1.8378770664093454835606594728112;

template <typename M>
AEVB_HD M residual(M d, M e) {
  return d == M(0) ? M(0) : d * e;
}

// The element's term of -2 log N.
template <typename M>
AEVB_HD M term(M d, M s, M e) {
  const M r = residual(d, e);
  return M(kLog2Pi) + s + r * r;
}

template <typename M>
AEVB_HD M grad_mean(M g, M d, M e) {
  return d == M(0) ? M(0) : g * residual(d, e) * e;
}

template <typename M>
AEVB_HD M grad_logvar(M g, M d, M e) {
  const M r = residual(d, e);
  return M(0.5) * g * (r * r - M(1));
}

}  // namespace aevb::gaussian
