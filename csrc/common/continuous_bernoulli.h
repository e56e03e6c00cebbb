// The continuous Bernoulli likelihood's per-element math from logits a (Loaiza-Ganem & Cunningham
// 2019; docs/paper.md), shared by the CPU and CUDA kernels, which hand in e = exp(-|a|) (the
// backward) and log(ratio(a, e)) (the forward):
//   log p(x|a) = x a - softplus(a) + log C(a),  C(a) = a / tanh(a / 2)  (C(0) = 2)
// for x in [0, 1]: the Bernoulli's term and its normalizer. With u = |a|, and s a = x a - max(a, 0)
// as in bernoulli.h, softplus(a) - max(a, 0) = log1p(e) and log C(a) = log(u / (1 - e)) + log1p(e):
//   log p(x|a) = s a + R(u),  R(u) = log(u / (1 - e)) = u/2 - log(sinh(u/2) / (u/2))
//   d/da = x - [a >= 0] + sign(a) R'(u),  R'(u) = 1/u - e / (1 - e) = 1/u - 1/(e^u - 1)
// (a >= 0 counted positive: both sides of the sum meet at a = 0, where d/da = x - 1/2).
// Near a = 0 (lambda = 1/2) the closed forms cancel, and at 0 they are 0/0: below u = 1 both are
// their Taylor series (Bernoulli numbers, convergent up to u = 2 pi), to float's or double's
// precision. At infinite a (lambda 0 or 1) the density is a point mass's: +inf where x is that
// point (s = 0), -inf elsewhere. A NaN logit or target gives NaN.
#pragma once

#include <cfloat>

#include "philox.h"  // AEVB_HD

namespace aevb::continuous_bernoulli {

// u / (1 - e), whose log the caller hands to term (used from u = 1 on).
template <typename M>
AEVB_HD M ratio(M a, M e) {
  return (a < M(0) ? -a : a) / (M(1) - e);
}

// log(sinh(v) / v), v = u / 2, as its series in w = u^2 for u < 1; its first omitted term is under
// 3e-9 (float) and 5e-19 (double) there.
template <typename M>
AEVB_HD M log_sinhc(M w) {
  if constexpr (sizeof(M) == 8) {
    return w * (1.0 / 24 + w * (-1.0 / 2880 +
                                w * (1.0 / 181440 +
                                     w * (-1.0 / 9676800 +
                                          w * (1.0 / 479001600 + w * (-691.0 / 15692092416000 +
                                                                      w * (1.0 / 1046139494400 +
                                                                           w * (-3617.0 / 170729965486080000.0))))))));
  } else {
    return w * (M(1.0 / 24) + w * (M(-1.0 / 2880) + w * (M(1.0 / 181440) + w * M(-1.0 / 9676800))));
  }
}

// R'(u) = 1/2 - u/12 + u^3/720 - ... for u < 1; its first omitted term is under 6e-10 (float) and
// 6e-18 (double) there.
template <typename M>
AEVB_HD M dratio_series(M u) {
  const M w = u * u;
  M odd;
  if constexpr (sizeof(M) == 8) {
    odd = -1.0 / 12 +
          w * (1.0 / 720 +
               w * (-1.0 / 30240 +
                    w * (1.0 / 1209600 +
                         w * (-1.0 / 47900160 +
                              w * (691.0 / 1307674368000 +
                                   w * (-1.0 / 74724249600 + w * (3617.0 / 10670622842880000.0 +
                                                                  w * (-43867.0 / 5109094217170944000 +
                                                                       w * (174611.0 / 802857662698291200000.0)))))))));
  } else {
    odd = M(-1.0 / 12) + w * (M(1.0 / 720) + w * (M(-1.0 / 30240) + w * (M(1.0 / 1209600) + w * M(-1.0 / 47900160))));
  }
  return M(0.5) + u * odd;
}

// The element's log-likelihood, given log_ratio = log(ratio(a, e)) (unused below u = 1).
template <typename M>
AEVB_HD M term(M a, M x, M log_ratio) {
  const M u = a < M(0) ? -a : a;
  const M s = a < M(0) ? x : x - M(1);
  const M sa = s == M(0) ? M(0) : s * a;
  const M max = M(sizeof(M) == 8 ? DBL_MAX : FLT_MAX);
  // Past the finite range R is +inf and is not read from log_ratio (a fast log need not take inf or
  // NaN); at infinite a with s != 0, s a = -inf is the limit, which R's +inf would make NaN.
  const M r = u < M(1) ? M(0.5) * u - log_sinhc(u * u) : (u <= max ? log_ratio : (s != M(0) && u > max ? M(0) : u));
  return sa + r;
}

// The gradient for the row gradient g, given e = exp(-|a|).
template <typename M>
AEVB_HD M grad(M g, M a, M x, M e) {
  const M u = a < M(0) ? -a : a;
  const M dr = u < M(1) ? dratio_series(u) : M(1) / u - e / (M(1) - e);
  return g * (a >= M(0) ? x - M(1) + dr : x - dr);
}

}  // namespace aevb::continuous_bernoulli
