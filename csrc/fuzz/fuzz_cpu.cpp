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
using aevb::element_size;
using Bytes = std::vector<unsigned char>;

class Fuzzer {
 public:
  explicit Fuzzer(uint64_t seed) : rng_(seed) {}

  int64_t below(int64_t n) { return std::uniform_int_distribution<int64_t>(0, n - 1)(rng_); }
  int64_t pick(std::initializer_list<int64_t> values) {
    return values.begin()[std::uniform_int_distribution<size_t>(0, values.size() - 1)(rng_)];
  }

  double value() {
    static const double special[] = {0.0,
                                     -0.0,
                                     1e-40,
                                     -1e-40,
                                     1e-310,
                                     88.0,
                                     -88.0,
                                     1e4,
                                     -1e4,
                                     1e30,
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

// What every case draws first: the values' dtype, the thread count and a shape.
struct Case {
  DType t;
  int threads;
  int64_t rows, cols;
};

// The kernels: those of csrc/common/kernel_list.h, then the CPU-only ones.
enum class Kernel {
#define AEVB_KERNEL(ret, name, ...) name,
#include "../common/kernel_list.h"
#undef AEVB_KERNEL
  adagrad_step,
  count
};

// One random call of kernel K: declared for every kernel, defined below for each, so a kernel added
// to the list without a case here does not link.
template <Kernel K>
void fuzz(Fuzzer& f, const Case& c);

template <>
void fuzz<Kernel::adagrad_step>(Fuzzer& f, const Case& c) {  // float32 or float64 parameters
  const DType p = c.t == DType::f64 ? DType::f64 : DType::f32;
  const int64_t n = c.rows * c.cols;
  Bytes param = f.values(p, n), grad = f.values(p, n), sum = f.values(p, n);
  aevb::cpu::adagrad_step(p, data(param), data(grad), data(sum), n, std::fabs(f.value()), std::fabs(f.value()), 1e-10,
                          c.threads);
}

// The inputs of a reparameterize call: mu, logvar, the seed, L samples, the estimator.
struct Reparameterize {
  Reparameterize(Fuzzer& f, const Case& c)
      : L(f.pick({0, 1, 3})),
        mc(f.pick({0, 1}) == 1),
        mu(f.values(c.t, c.rows * c.cols)),
        logvar(f.values(c.t, c.rows * c.cols)) {
    // (key, first row, rows): these rows as a slice of a larger batch, or the whole batch.
    const int64_t first = f.pick({0, 0, 1, 7});
    seed[0] = f.pick({0, 1, 12345, INT64_MAX});
    seed[1] = first;
    seed[2] = first + c.rows + f.pick({0, 3});
    kl_rows = mc ? L * c.rows : c.rows;
  }
  int64_t L;
  bool mc;
  Bytes mu, logvar;
  int64_t seed[3];
  int64_t kl_rows;
};

template <>
void fuzz<Kernel::reparameterize_forward>(Fuzzer& f, const Case& c) {
  Reparameterize r(f, c);
  Bytes z(static_cast<size_t>(r.L * c.rows * c.cols) * element_size(c.t));
  Bytes kl(static_cast<size_t>(r.kl_rows) * element_size(row_type(c.t)));
  aevb::cpu::reparameterize_forward(c.t, data(r.mu), data(r.logvar), r.seed, data(z), data(kl), c.rows, c.cols, r.L,
                                    r.mc, c.threads);
}

template <>
void fuzz<Kernel::reparameterize_backward>(Fuzzer& f, const Case& c) {
  Reparameterize r(f, c);
  const bool with_grad_z = f.pick({0, 1}) == 1;
  Bytes grad_z = with_grad_z ? f.values(c.t, r.L * c.rows * c.cols) : Bytes();
  Bytes grad_kl = f.values(row_type(c.t), r.kl_rows);
  Bytes grad_mu(r.mu.size()), grad_logvar(r.logvar.size());
  aevb::cpu::reparameterize_backward(c.t, with_grad_z ? data(grad_z) : nullptr, data(grad_kl), data(r.mu),
                                     data(r.logvar), r.seed, data(grad_mu), data(grad_logvar), c.rows, c.cols, r.L,
                                     r.mc, f.pick({0, 1}) == 1, c.threads);
}

// The inputs of a likelihood call: rows of two value buffers a and b reading targets x[n % Nx] (Nx
// dividing the rows) of the values' dtype, uint8 or bool, or float32 beside half precision; the row
// gradient g, and outputs of every size a likelihood kernel writes.
struct Likelihood {
  Likelihood(Fuzzer& f, const Case& c) {
    const int64_t copies = f.pick({1, 1, 2, 3});
    nx = c.rows % copies == 0 ? c.rows / copies : c.rows;
    const int64_t same = static_cast<int64_t>(c.t);
    const bool half = c.t == DType::f16 || c.t == DType::bf16;
    tx = static_cast<DType>(half ? f.pick({same, 0, 4, 5}) : f.pick({same, 4, 5}));
    x = f.values(tx, nx * c.cols, true);
    a = f.values(c.t, c.rows * c.cols);
    b = f.values(c.t, c.rows * c.cols);
    g = f.values(row_type(c.t), c.rows);
    out.resize(static_cast<size_t>(c.rows) * element_size(row_type(c.t)));
    grad_a.resize(a.size());
    grad_b.resize(b.size());
  }
  int64_t nx;
  DType tx;
  Bytes x, a, b, g, out, grad_a, grad_b;
};

template <>
void fuzz<Kernel::bernoulli_forward>(Fuzzer& f, const Case& c) {
  Likelihood l(f, c);
  aevb::cpu::bernoulli_forward(c.t, l.tx, data(l.a), data(l.x), data(l.out), c.rows, l.nx, c.cols, c.threads);
}

template <>
void fuzz<Kernel::bernoulli_backward>(Fuzzer& f, const Case& c) {
  Likelihood l(f, c);
  aevb::cpu::bernoulli_backward(c.t, l.tx, data(l.g), data(l.a), data(l.x), data(l.grad_a), c.rows, l.nx, c.cols,
                                c.threads);
}

template <>
void fuzz<Kernel::continuous_bernoulli_forward>(Fuzzer& f, const Case& c) {
  Likelihood l(f, c);
  aevb::cpu::continuous_bernoulli_forward(c.t, l.tx, data(l.a), data(l.x), data(l.out), c.rows, l.nx, c.cols,
                                          c.threads);
}

template <>
void fuzz<Kernel::continuous_bernoulli_backward>(Fuzzer& f, const Case& c) {
  Likelihood l(f, c);
  aevb::cpu::continuous_bernoulli_backward(c.t, l.tx, data(l.g), data(l.a), data(l.x), data(l.grad_a), c.rows, l.nx,
                                           c.cols, c.threads);
}

template <>
void fuzz<Kernel::gaussian_forward>(Fuzzer& f, const Case& c) {
  Likelihood l(f, c);
  aevb::cpu::gaussian_forward(c.t, l.tx, data(l.x), data(l.a), data(l.b), data(l.out), c.rows, l.nx, c.cols, c.threads);
}

template <>
void fuzz<Kernel::gaussian_backward>(Fuzzer& f, const Case& c) {
  Likelihood l(f, c);
  aevb::cpu::gaussian_backward(c.t, l.tx, data(l.g), data(l.x), data(l.a), data(l.b), data(l.grad_a), data(l.grad_b),
                               c.rows, l.nx, c.cols, c.threads);
}

template <>
void fuzz<Kernel::laplace_forward>(Fuzzer& f, const Case& c) {
  Likelihood l(f, c);
  aevb::cpu::laplace_forward(c.t, l.tx, data(l.x), data(l.a), data(l.b), data(l.out), c.rows, l.nx, c.cols, c.threads);
}

template <>
void fuzz<Kernel::laplace_backward>(Fuzzer& f, const Case& c) {
  Likelihood l(f, c);
  aevb::cpu::laplace_backward(c.t, l.tx, data(l.g), data(l.x), data(l.a), data(l.b), data(l.grad_a), data(l.grad_b),
                              c.rows, l.nx, c.cols, c.threads);
}

// A mixture's inputs: the Likelihood's targets and row gradient, and three value buffers of K
// components per element (logits, means, log scales) with their gradients.
struct Mixture : Likelihood {
  Mixture(Fuzzer& f, const Case& c) : Likelihood(f, c), K(f.pick({1, 2, 5, 10})) {
    for (Bytes* v : {&logits, &means, &log_scales}) *v = f.values(c.t, c.rows * c.cols * K);
    for (Bytes* v : {&grad_logits, &grad_means, &grad_log_scales}) v->resize(logits.size());
  }
  int64_t K;
  Bytes logits, means, log_scales, grad_logits, grad_means, grad_log_scales;
};

template <>
void fuzz<Kernel::discretized_logistic_mixture_forward>(Fuzzer& f, const Case& c) {
  Mixture l(f, c);
  aevb::cpu::discretized_logistic_mixture_forward(c.t, l.tx, data(l.x), data(l.logits), data(l.means),
                                                  data(l.log_scales), data(l.out), c.rows, l.nx, c.cols, l.K,
                                                  c.threads);
}

template <>
void fuzz<Kernel::discretized_logistic_mixture_backward>(Fuzzer& f, const Case& c) {
  Mixture l(f, c);
  aevb::cpu::discretized_logistic_mixture_backward(c.t, l.tx, data(l.g), data(l.x), data(l.logits), data(l.means),
                                                   data(l.log_scales), data(l.grad_logits), data(l.grad_means),
                                                   data(l.grad_log_scales), c.rows, l.nx, c.cols, l.K, c.threads);
}

// One random case of one kernel.
void run_case(Fuzzer& f) {
  const Case c{static_cast<DType>(f.pick({0, 1, 2, 3})), static_cast<int>(f.pick({1, 2})),
               f.pick({0, 1, 2, 3, 7, 64, 301}), f.pick({1, 2, 3, 17, 1023, 1024, 1025, 3000})};
  switch (static_cast<Kernel>(f.below(static_cast<int64_t>(Kernel::count)))) {
#define AEVB_KERNEL(ret, name, ...) \
  case Kernel::name:                \
    return fuzz<Kernel::name>(f, c);
#include "../common/kernel_list.h"
#undef AEVB_KERNEL
    case Kernel::adagrad_step:
      return fuzz<Kernel::adagrad_step>(f, c);
    case Kernel::count:
      break;
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
