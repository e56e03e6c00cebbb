// float32 exp, log, log1p and cos written branch-free so that GCC vectorizes the loops that
// call them (libm's scalar calls would stop the vectorizer). Cephes' polynomials and
// Cody-Waite reductions; each is within 1-2 ulp of the correctly rounded result on its domain.
// The double overloads forward to libm: float64 is the gradcheck path, not a fast one.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

namespace aevb::cpu {

inline uint32_t float_bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
}

inline float bits_float(uint32_t u) {
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}

// exp(x) for every float, NaN and +-inf included; results below 2^-149 round to 0.
inline float vexp(float x) {
  const float lo = -104.0f, hi = 88.72283935546875f;
  const float xc = x < lo ? lo : (x > hi ? hi : x);  // comparisons keep NaN
  const float magic = 12582912.0f;                   // 1.5 * 2^23: adding it rounds to an integer
  const float t = xc * 1.44269504088896341f + magic;
  const float n = t - magic;
  const int32_t ni = static_cast<int32_t>(float_bits(t) - float_bits(magic));
  const float r = (xc - n * 0.693359375f) - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float y = p * r * r + r + 1.0f;
  // 2^n in two factors so that n = 128 and the subnormal range both work.
  const int32_t n1 = ni >> 1, n2 = ni - n1;
  const float s1 = bits_float(static_cast<uint32_t>(n1 + 127) << 23);
  const float s2 = bits_float(static_cast<uint32_t>(n2 + 127) << 23);
  const float res = y * s1 * s2;
  return x > hi ? std::numeric_limits<float>::infinity() : res;
}

// log(x) for normal positive x (the caller guarantees the domain).
inline float vlog(float x) {
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

// log1p(t) for t in [0, 1] or NaN, given u = 1 + t and r = 1 / u (callers that need 1 / (1 + t)
// anyway share the division): log(u) corrected for the rounding of 1 + t. NaN propagates
// through the correction term.
inline float vlog1p(float t, float u, float r) { return vlog(u) + (t - (u - 1.0f)) * r; }

// cos(x) for x in [0, 8192): reduction by pi/4 in three parts, then the sin or cos polynomial.
inline float vcos(float x) {
  int32_t j = static_cast<int32_t>(x * 1.27323954473516f);
  j += j & 1;
  const float y = static_cast<float>(j);
  j &= 7;
  // x = z + j pi/4 with j in {0, 2, 4, 6}: cos z, -sin z, -cos z, sin z.
  const float sign = (j == 2 || j == 4) ? -1.0f : 1.0f;
  const float z = ((x - y * 0.78515625f) - y * 2.4187564849853515625e-4f) - y * 3.77489497744594108e-8f;
  const float zz = z * z;
  const float c = ((2.443315711809948e-5f * zz - 1.388731625493765e-3f) * zz + 4.166664568298827e-2f) *
                      zz * zz - 0.5f * zz + 1.0f;
  const float s = ((-1.9515295891e-4f * zz + 8.3321608736e-3f) * zz - 1.6666654611e-1f) * zz * z + z;
  return sign * ((j & 2) ? s : c);
}

inline double vexp(double x) { return std::exp(x); }
inline double vlog1p(double t, double, double) { return std::log1p(t); }

}  // namespace aevb::cpu
