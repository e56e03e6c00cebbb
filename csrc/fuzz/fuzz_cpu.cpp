// Fuzz driver of the CPU kernels, built with AddressSanitizer and UBSan (CMake -DAEVB_FAST_FUZZ=ON):
// random ops, dtypes, shapes (empty, one element, odd, past a chunk, targets shared across rows),
// thread counts and values (normals of every scale, +-0, +-inf, NaN, subnormals, and for half types
// every bit pattern) on buffers of exactly the size each kernel may touch, so a read or write past
// one, or undefined behaviour, stops the run with the sanitizer's report.
//
//   aevb_fuzz [seconds=10] [seed=0]    prints the number of cases run; exit status 0 when clean
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "../cpu/kernels.h"

namespace {

using aevb::DType;
using Bytes = std::vector<unsigned char>;

size_t element_size(DType t) {
  switch (t) {
    case DType::f64: return 8;
    case DType::f32: return 4;
    case DType::f16:
    case DType::bf16: return 2;
    default: return 1;
  }
}

class Fuzzer {
 public:
  explicit Fuzzer(uint64_t seed) : rng_(seed) {}

  int64_t pick(std::initializer_list<int64_t> values) {
    return values.begin()[std::uniform_int_distribution<size_t>(0, values.size() - 1)(rng_)];
  }

  double value() {
    static const double special[] = {0.0, -0.0, 1e-40, -1e-40, 1e-310, 88.0, -88.0, 1e4, -1e4, 1e30,
                                     std::numeric_limits<double>::infinity(),
                                     -std::numeric_limits<double>::infinity(),
                                     std::numeric_limits<double>::quiet_NaN()};
    if (std::uniform_int_distribution<int>(0, 9)(rng_) == 0) {
      return special[std::uniform_int_distribution<size_t>(0, std::size(special) - 1)(rng_)];
    }
    return std::normal_distribution<double>()(rng_) * std::pow(10.0, std::uniform_int_distribution<int>(-3, 3)(rng_));
  }

  // n values of dtype t: floats from value(), half types as raw bit patterns, targets in range.
  Bytes values(DType t, int64_t n, bool target = false) {
    Bytes out(static_cast<size_t>(n) * element_size(t));
    for (int64_t i = 0; i < n; ++i) {
      unsigned char* at = out.data() + static_cast<size_t>(i) * element_size(t);
      if (t == DType::f64) {
        const double v = target ? unit() : value();
        std::memcpy(at, &v, 8);
      } else if (t == DType::f32) {
        const float v = static_cast<float>(target ? unit() : value());
        std::memcpy(at, &v, 4);
      } else if (t == DType::f16 || t == DType::bf16) {
        const uint16_t v = target ? half_unit(t) : static_cast<uint16_t>(rng_());
        std::memcpy(at, &v, 2);
      } else if (t == DType::u8) {
        *at = static_cast<unsigned char>(pick({0, 1, 1, 0, 2}));  // 2: outside [0, 1], reported
      } else {
        *at = static_cast<unsigned char>(pick({0, 1}));  // a bool holds 0 or 1
      }
    }
    return out;
  }

 private:
  double unit() { return std::uniform_real_distribution<double>(0.0, 1.0)(rng_); }

  uint16_t half_unit(DType t) {  // 0, 1 or 0.5 in float16 / bfloat16
    const uint16_t f16[] = {0x0000, 0x3C00, 0x3800}, bf16[] = {0x0000, 0x3F80, 0x3F00};
    const size_t i = std::uniform_int_distribution<size_t>(0, 2)(rng_);
    return t == DType::f16 ? f16[i] : bf16[i];
  }

  std::mt19937_64 rng_;
};

DType row_type(DType t) { return t == DType::f64 ? DType::f64 : DType::f32; }

void* data(Bytes& b) { return b.empty() ? nullptr : b.data(); }

// One random case of one op.
void run_case(Fuzzer& f) {
  const DType t = static_cast<DType>(f.pick({0, 1, 2, 3}));
  const int threads = static_cast<int>(f.pick({1, 2}));
  const int64_t rows = f.pick({0, 1, 2, 3, 7, 64, 301});
  const int64_t cols = f.pick({1, 2, 3, 17, 1023, 1024, 1025, 3000});
  const int64_t op = f.pick({0, 1, 2, 3, 4, 5, 6});
  if (op == 6) {  // an Adagrad step of float32 or float64 parameters
    const DType p = t == DType::f64 ? DType::f64 : DType::f32;
    Bytes param = f.values(p, rows * cols), grad = f.values(p, rows * cols), sum = f.values(p, rows * cols);
    aevb::cpu::adagrad_step(p, data(param), data(grad), data(sum), rows * cols, std::fabs(f.value()),
                            std::fabs(f.value()), 1e-10, threads);
    return;
  }
  if (op <= 1) {  // reparameterize forward / backward
    const int64_t L = f.pick({0, 1, 3});
    const bool mc = f.pick({0, 1}) == 1;
    Bytes mu = f.values(t, rows * cols), logvar = f.values(t, rows * cols);
    // (key, first row, rows): these rows as a slice of a larger batch, or the whole batch.
    const int64_t first = static_cast<int64_t>(f.pick({0, 0, 1, 7}));
    const int64_t seed[3] = {static_cast<int64_t>(f.pick({0, 1, 12345, INT64_MAX})), first,
                             first + rows + static_cast<int64_t>(f.pick({0, 3}))};
    const int64_t kl_rows = mc ? L * rows : rows;
    if (op == 0) {
      Bytes z(static_cast<size_t>(L * rows * cols) * element_size(t));
      Bytes kl(static_cast<size_t>(kl_rows) * element_size(row_type(t)));
      aevb::cpu::reparameterize_forward(t, data(mu), data(logvar), seed, data(z), data(kl), rows, cols, L, mc,
                                        threads);
    } else {
      const bool with_grad_z = f.pick({0, 1}) == 1;
      Bytes grad_z = with_grad_z ? f.values(t, L * rows * cols) : Bytes();
      Bytes grad_kl = f.values(row_type(t), kl_rows);
      Bytes grad_mu(mu.size()), grad_logvar(logvar.size());
      aevb::cpu::reparameterize_backward(t, with_grad_z ? data(grad_z) : nullptr, data(grad_kl), data(mu),
                                         data(logvar), seed, data(grad_mu), data(grad_logvar), rows, cols, L, mc,
                                         threads);
    }
    return;
  }
  // Likelihoods: rows of values read targets x[n % Nx], Nx dividing rows.
  const int64_t copies = f.pick({1, 1, 2, 3});
  const int64_t nx = rows % copies == 0 ? rows / copies : rows;
  // Targets of the values' dtype, uint8 or bool, or float32 beside half precision.
  const int64_t same = static_cast<int64_t>(t);
  const bool half = t == DType::f16 || t == DType::bf16;
  const DType tx = static_cast<DType>(half ? f.pick({same, 0, 4, 5}) : f.pick({same, 4, 5}));
  Bytes x = f.values(tx, nx * cols, true), a = f.values(t, rows * cols), b = f.values(t, rows * cols);
  Bytes g = f.values(row_type(t), rows);
  Bytes out(static_cast<size_t>(rows) * element_size(row_type(t)));
  Bytes grad_a(a.size()), grad_b(b.size());
  switch (op) {
    case 2: aevb::cpu::bernoulli_forward(t, tx, data(a), data(x), data(out), rows, nx, cols, threads); break;
    case 3:
      aevb::cpu::bernoulli_backward(t, tx, data(g), data(a), data(x), data(grad_a), rows, nx, cols, threads);
      break;
    case 4: aevb::cpu::gaussian_forward(t, tx, data(x), data(a), data(b), data(out), rows, nx, cols, threads); break;
    default:
      aevb::cpu::gaussian_backward(t, tx, data(g), data(x), data(a), data(b), data(grad_a), data(grad_b), rows, nx,
                                   cols, threads);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const double seconds = argc > 1 ? std::atof(argv[1]) : 10.0;
  const uint64_t seed = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 0;
  Fuzzer fuzzer(seed);
  const auto start = std::chrono::steady_clock::now();
  int64_t cases = 0;
  while (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < seconds) {
    run_case(fuzzer);
    ++cases;
  }
  std::printf("aevb_fuzz: %lld cases in %.0f s, seed %llu, SIMD clone %s: clean\n", static_cast<long long>(cases),
              seconds, static_cast<unsigned long long>(seed), aevb::cpu::simd_level());
  return 0;
}
