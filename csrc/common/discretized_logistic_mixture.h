// The discretized logistic mixture's per-component math (Salimans et al. 2017, PixelCNN++), shared
// by the CPU and CUDA kernels, which hand in their exponential and logarithms as a Math policy
// (static exp, exp_nonpositive for arguments <= 0 or NaN, log and log1p of M). Data are 8-bit grey
// levels x = v / 255 in [0, 1]: value v owns the bin [x - h, x + h], h = 1/510, the first bin open
// to -inf and the last to +inf. One component with mean mu and log scale s, a = exp(-s):
//   plus = a (x - mu + h),  minus = a (x - mu - h)
//   v = 0:    log P = log sigmoid(plus)
//   v = 255:  log P = log(1 - sigmoid(minus))
//   else:     log P = log(sigmoid(plus) - sigmoid(minus)), or where that mass is 1e-5 or less (a bin
//             far in a tail, whose difference loses its digits in float32) the density at the
//             middle times the bin's width: m - s - 2 softplus(m) - log 255, m = a (x - mu).
// As PixelCNN++, log scales below -7 count as -7 (a scale of a tenth of a bin: the bin's mass is
// then all but 1, and nothing is gained beyond), their gradient 0 there.
// The bin's mass as sigmoid(plus) sigmoid(-minus) (1 - exp(-a/255)), a product of exact factors,
// where the difference of the two sigmoids loses the digits of a bin narrow beside its component.
// The derivatives follow d plus / d mu = -a, d plus / d s = -plus (and so for minus and m). The
// mixture: log p = logsumexp_k(log softmax(logit)_k + log P_k), the log-softmax taken first (a huge
// logit would absorb log P).
#pragma once

#include "philox.h"  // AEVB_HD

// component() is too large for the compiler to inline by itself, and a call in the CPU kernels'
// loops stops their vectorization (it took 80 ns a component instead of a few): forced on the host.
#if defined(__CUDACC__)
#define AEVB_MIXTURE_INLINE AEVB_HD
#else
#define AEVB_MIXTURE_INLINE __attribute__((always_inline)) inline
#endif

namespace aevb::logistic_mixture {

constexpr double kHalfBin = 0.5 / 255;
constexpr double kLog255 = 5.5412635451584258;
constexpr double kMinMass = 1e-5;
constexpr double kMinLogScale = -7;

// exp(-|y|), its argument floored where the result would be subnormal (below 2^-126 in float):
// a value that small changes no sum or log it enters, and subnormal arithmetic costs x86 a
// microcode assist per operation (a component then took 30 ns instead of a few).
template <typename Math, typename M>
AEVB_HD M exp_neg_abs(M y) {
  const M floor = M(sizeof(M) == 8 ? -708 : -87);
  const M arg = y < M(0) ? y : -y;
  return Math::exp_nonpositive(arg < floor ? floor : arg);
}

// 1 - exp(-d) for d >= 0: its series where the difference would cancel.
template <typename Math, typename M>
AEVB_HD M one_minus_exp(M d) {
  const M series =
      d * (M(1) - d * (M(0.5) - d * (M(1.0 / 6) - d * (M(1.0 / 24) - d * (M(1.0 / 120) - d * M(1.0 / 720))))));
  const M direct = M(1) - Math::exp_nonpositive(-d);  // computed either way: no branch around a call
  return d < M(sizeof(M) == 8 ? 0.01 : 0.1) ? series : direct;
}

// One component: its log P(x), P(x) itself, and log P's derivatives with respect to its mean and
// log scale, for every bin but one far in a tail (mass 1e-5 or less): the return value says whether
// x's bin is such a one, whose values tail_component() then gives (component() does both). That
// case is rare and costs an exp, a log and a division of its own, so it is left out of the common
// path. Every other case is computed and one selected, without branches, so that the CPU kernels
// vectorize it (the cases not taken may hold inf or NaN, which the selects drop). A caller that uses
// only some outputs, inlining this, pays for those alone: P costs no exp or log beyond its factors'.
template <typename Math, typename M>
AEVB_MIXTURE_INLINE bool common_component(M x, M mean, M raw_log_scale, M& log_p, M& mass, M& d_mean, M& d_log_scale) {
  const bool clamped = raw_log_scale < M(kMinLogScale);  // NaN stays NaN
  const M log_scale = clamped ? M(kMinLogScale) : raw_log_scale;
  const M a = Math::exp(-log_scale), c = x - mean;
  const M plus = a * (c + M(kHalfBin)), minus = a * (c - M(kHalfBin));
  const M e_plus = exp_neg_abs<Math>(plus), e_minus = exp_neg_abs<Math>(minus);
  // sigmoid(plus), sigmoid(-plus), sigmoid(minus) and sigmoid(-minus), one division for each argument.
  const M r_plus = M(1) / (M(1) + e_plus), r_minus = M(1) / (M(1) + e_minus);
  const M n_plus = plus >= M(0) ? e_plus * r_plus : r_plus, s_plus = plus >= M(0) ? r_plus : e_plus * r_plus;
  const M s_minus = minus >= M(0) ? r_minus : e_minus * r_minus, n_minus = minus >= M(0) ? e_minus * r_minus : r_minus;
  // log sigmoid(plus) = min(plus, 0) + log sigmoid(|plus|), so the edge bins' logs, and the inner
  // bin's log mass log sigmoid(plus) + log sigmoid(-minus) + log(1 - exp(-a/255)), each take one log
  // of a product of factors in [1/2, 1] and q (its rounding an absolute error of float's epsilon).
  const M d = a * M(2 * kHalfBin), q = one_minus_exp<Math>(d);
  const M low_offset = plus < M(0) ? plus : M(0), high_offset = minus > M(0) ? -minus : M(0);
  const bool low = (x < M(kHalfBin)), high = (x > M(1) - M(kHalfBin));
  const M factor = low ? r_plus : (high ? r_minus : r_plus * r_minus * q);
  mass = low ? s_plus : (high ? n_minus : s_plus * n_minus * q);
  log_p = (low ? low_offset : (high ? high_offset : low_offset + high_offset)) + Math::log(factor);
  // d log P / d (a (x - mu)), the shift all of a case's arguments share: for a bin,
  // (sigmoid'(plus) - sigmoid'(minus)) / mass = 1 - sigmoid(plus) - sigmoid(minus), which avoids
  // the difference of near-equal terms.
  const M shift = low ? n_plus : (high ? -s_minus : n_plus - s_minus);
  // Under d / d s each argument comes with its own factor: the bin's is
  // minus * shift + (plus - minus) sigmoid'(plus) / mass, the edges' their argument times shift.
  const M arg = low ? plus : minus;
  const M width = low | high ? M(0) : d * n_plus / (n_minus * q);
  d_mean = -a * shift;
  d_log_scale = clamped ? M(0) : -(arg * shift + width);
  // & rather than &&: no short-circuit branches in the vectorized loops.
  return !low & !high & !(mass > M(kMinMass));
}

// A bin far in a tail: the density at its middle times its width, m - s - 2 softplus(m) - log 255
// with m = a (x - mu), and its derivatives (d log P / d m = 1 - 2 sigmoid(m)).
template <typename Math, typename M>
AEVB_HD void tail_component(M x, M mean, M raw_log_scale, M& log_p, M& mass, M& d_mean, M& d_log_scale) {
  const bool clamped = raw_log_scale < M(kMinLogScale);
  const M log_scale = clamped ? M(kMinLogScale) : raw_log_scale;
  const M a = Math::exp(-log_scale), mid = a * (x - mean);
  const M e_mid = exp_neg_abs<Math>(mid), r_mid = M(1) / (M(1) + e_mid);
  const M shift = M(1) - M(2) * (mid >= M(0) ? r_mid : e_mid * r_mid);
  log_p = -(mid < M(0) ? -mid : mid) - M(2) * Math::log1p(e_mid) - log_scale - M(kLog255);
  // The density at the middle, a sigmoid'(m) = a e r^2, times the width 1/255.
  mass = a * M(2 * kHalfBin) * (e_mid * r_mid * r_mid);
  d_mean = -a * shift;
  d_log_scale = clamped ? M(0) : -(mid * shift) - M(1);
}

// Any component, for callers that can branch on the rare case (a GPU thread).
template <typename Math, typename M>
AEVB_MIXTURE_INLINE void component(M x, M mean, M log_scale, M& log_p, M& d_mean, M& d_log_scale) {
  M mass;
  if (common_component<Math>(x, mean, log_scale, log_p, mass, d_mean, d_log_scale))
    tail_component<Math>(x, mean, log_scale, log_p, mass, d_mean, d_log_scale);
}

}  // namespace aevb::logistic_mixture
