// Flush-to-zero and denormals-are-zero (the MXCSR's FTZ and DAZ bits on x86-64; elsewhere nothing
// changes) for the calling thread while in scope, its mode restored after. x86 takes a microcode
// assist of about a hundred cycles for each operation that reads or makes a denormal float: for
// kernels whose values pass through that range (a decayed weight, a product of probabilities),
// and that need nothing from values so small.
#pragma once

#if defined(__x86_64__)
#include <xmmintrin.h>
#endif

namespace aevb::cpu {

class FlushDenormals {
#if defined(__x86_64__)
  static constexpr unsigned kFtzDaz = 0x8040;
  unsigned saved_ = _mm_getcsr();

 public:
  FlushDenormals() { _mm_setcsr(saved_ | kFtzDaz); }
  ~FlushDenormals() { _mm_setcsr(saved_); }
  FlushDenormals(const FlushDenormals&) = delete;
  FlushDenormals& operator=(const FlushDenormals&) = delete;
#endif
};

}  // namespace aevb::cpu
