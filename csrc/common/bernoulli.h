// The Bernoulli likelihood's per-element math from logits a, shared by the CPU and CUDA kernels (the
// exponential and log1p are left to each backend: they hand in e = exp(-|a|) and log1p(e)):
//   log p(x|a) = x a - softplus(a),  softplus(a) = max(a, 0) + log1p(exp(-|a|))
//              = s a - log1p(exp(-|a|)),  s = x - 1 for a >= 0, x for a < 0
//   d/da = x - sigmoid(a),  sigmoid(a) = 1 / (1 + e) for a >= 0, e / (1 + e) below
// s a is x a - max(a, 0) without its inf - inf at a = +inf; s = 0 gives the limit 0 (0 log 0 = 0)
// where s a would be 0 * inf (a = +inf with x = 1, a = -inf with x = 0). A NaN logit or target
// still gives NaN (through log1p, or s).
#pragma once

#include "philox.h"  // AEVB_HD

namespace aevb::bernoulli {

// The element's log-likelihood, given log1p(exp(-|a|)).
template <typename M>
AEVB_HD M term(M a, M x, M log1p_e) {
  const M s = a < M(0) ? x : x - M(1);
  return (s == M(0) ? M(0) : s * a) - log1p_e;
}

// The gradient for the row gradient g, given e = exp(-|a|).
template <typename M>
AEVB_HD M grad(M g, M a, M x, M e) {
  const M r = M(1) / (M(1) + e);
  return g * (x - (a >= M(0) ? r : e * r));
}

}  // namespace aevb::bernoulli
