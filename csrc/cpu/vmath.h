// float32 exp, log, log1p and cos written branch-free so that GCC vectorizes the loops that
// call them (libm's scalar calls would stop the vectorizer). Cephes' polynomials and
// Cody-Waite reductions; each is within 1-2 ulp of the correctly rounded result on its domain.
// The double overloads forward to libm: float64 is the gradcheck path, not a fast one. Each is forced
// inline (AEVB_VMATH): GCC left vlog and vcos as calls inside the Box-Muller loop, which then ran
// scalar, a normal draw taking 26 ns where the vectorized loop takes a few.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#define AEVB_VMATH __attribute__((always_inline)) inline

namespace aevb::cpu {

AEVB_VMATH uint32_t float_bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
}

AEVB_VMATH float bits_float(uint32_t u) {
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}

// exp(xc) = 2^n y for xc in [-104, 88.73]: n the nearest integer to xc / ln 2 and y = exp(r) by
// Cephes' polynomial, r = xc - n ln 2 reduced in two parts (Cody-Waite).
struct ExpParts {
  float y;
  int32_t n;
};

AEVB_VMATH ExpParts exp_parts(float xc) {
  const float magic = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const float t = xc * 1.44269504088896341f + magic;
  const float n = t - magic;
  const float r = (xc - n * 0.693359375f) - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  return {p * r * r + r + 1.0f, static_cast<int32_t>(float_bits(t) - float_bits(magic))};
}

// exp(x) for every float, NaN and +-inf included; results below 2^-149 round to 0.
AEVB_VMATH float vexp(float x) {
  const float lo = -104.0f, hi = 88.72283935546875f;
  const ExpParts e = exp_parts(x < lo ? lo : (x > hi ? hi : x));  // comparisons keep NaN
  // 2^n in two factors so that n = 128 and the subnormal range both work.
  const int32_t n1 = e.n >> 1, n2 = e.n - n1;
  const float s1 = bits_float(static_cast<uint32_t>(n1 + 127) << 23);
  const float s2 = bits_float(static_cast<uint32_t>(n2 + 127) << 23);
  const float res = e.y * s1 * s2;
  return x > hi ? std::numeric_limits<float>::infinity() : res;
}

// exp(x) for x <= 0 or NaN (-inf gives 0), as exp(-|a|) in softplus and sigmoid; bit-identical to
// vexp there, without its upper clamp and infinity select and with 2^n as 2^(n + 64) 2^-64 (the
// first factor normal for every n >= -150, the second product the only rounding). In the Bernoulli
// kernels it took a fifth off each pass in the caches (forward 40 -> 31 us, backward 29 -> 23 us at
// [100, 784], one thread).
AEVB_VMATH float vexp_nonpositive(float x) {
  const ExpParts e = exp_parts(x < -104.0f ? -104.0f : x);  // the comparison keeps NaN
  return (e.y * bits_float(static_cast<uint32_t>(e.n + 191) << 23)) * 5.421010862427522e-20f;
}

// log(x) for normal positive x (the caller guarantees the domain).
AEVB_VMATH float vlog(float x) {
  const uint32_t u = float_bits(x);
  float e = static_cast<float>(static_cast<int32_t>(u >> 23) - 126);
  float m = bits_float((u & 0x007fffffu) | 0x3f000000u);  // x = m * 2^e, m in [0.5, 1)
  const bool small = m < 0.707106781186547524f;
  e = small ? e - 1.0f : e;
  m = small ? m + m - 1.0f : m - 1.0f;
  const float z = m * m;
  float p = 7.0376836292e-2f;
  p = p * m - 1.1514610310e-1f;
  p = p * m + 1.1676998740e-1f;
  p = p * m - 1.2420140846e-1f;
  p = p * m + 1.4249322787e-1f;
  p = p * m - 1.6668057665e-1f;
  p = p * m + 2.0000714765e-1f;
  p = p * m - 2.4999993993e-1f;
  p = p * m + 3.3333331174e-1f;
  float y = p * m * z;
  y += e * -2.12194440e-4f;
  y += -0.5f * z;
  return (m + y) + e * 0.693359375f;
}

// log1p(t) for t in [0, 1] or NaN (NaN propagates), as log1p(exp(-|a|)) in softplus:
//   log1p(t) = t + t^2 R(t),  R ~ (log1p(t) - t) / t^2
// with R a degree-8 minimax polynomial on [0, 1] for the weight t^2 / log1p(t) (the error R makes
// relative to the result), its coefficients rounded to float from the lowest up, the others fitted
// again after each. Nine multiply-adds, where log(1 + t) took an exponent split, a longer
// polynomial and a division to correct the rounding of 1 + t: the Bernoulli forward pass took 31
// instead of 53 us at [100, 784] (one thread). Checked on every float in [0, 1]: within 1.24 ulp of
// the correctly rounded result with FMA, 1.64 ulp without (through log(1 + t): 1.25 ulp).
AEVB_VMATH float vlog1p(float t) {
  float p = -3.290468594059348e-3f;
  p = p * t + 2.0086241886019707e-2f;
  p = p * t - 5.745723098516464e-2f;
  p = p * t + 1.0661128163337708e-1f;
  p = p * t - 1.5344880521297455e-1f;
  p = p * t + 1.9692102074623108e-1f;
  p = p * t - 2.4958018958568573e-1f;
  p = p * t + 3.3330464363098145e-1f;
  p = p * t - 4.999993145465851e-1f;
  return (t * t) * p + t;
}

// cos(x) for x in [0, 8192): reduction by pi/4 in three parts, then the sin or cos polynomial.
AEVB_VMATH float vcos(float x) {
  int32_t j = static_cast<int32_t>(x * 1.27323954473516f);
  j += j & 1;
  const float y = static_cast<float>(j);
  j &= 7;
  // x = z + j pi/4 with j in {0, 2, 4, 6}: cos z, -sin z, -cos z, sin z.
  const float sign = (j == 2 || j == 4) ? -1.0f : 1.0f;
  const float z = ((x - y * 0.78515625f) - y * 2.4187564849853515625e-4f) - y * 3.77489497744594108e-8f;
  const float zz = z * z;
  const float c =
      ((2.443315711809948e-5f * zz - 1.388731625493765e-3f) * zz + 4.166664568298827e-2f) * zz * zz - 0.5f * zz + 1.0f;
  const float s = ((-1.9515295891e-4f * zz + 8.3321608736e-3f) * zz - 1.6666654611e-1f) * zz * z + z;
  return sign * ((j & 2) ? s : c);
}

AEVB_VMATH double vexp(double x) { return std::exp(x); }
AEVB_VMATH double vexp_nonpositive(double x) { return std::exp(x); }
AEVB_VMATH double vlog(double x) { return std::log(x); }
AEVB_VMATH double vlog1p(double t) { return std::log1p(t); }

}  // namespace aevb::cpu
