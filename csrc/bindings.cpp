// aevb_fast._C: binds the torch-free kernels. Buffers travel as integer addresses (a tensor's
// data_ptr()), dtypes as the codes of csrc/cpu/dtype.h; the GIL is released while a kernel runs.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <string>
#include <vector>

#include "cpu/huge_pages.h"
#include "cpu/kernels.h"
#include "cpu/thread_pool.h"
#ifdef AEVB_FAST_WITH_CUDA
#include "cuda/kernels.h"
#include "cuda/runtime.h"
#endif

namespace py = pybind11;
using aevb::DType;

namespace {

template <typename T>
T* ptr(uintptr_t address) {
  return reinterpret_cast<T*>(address);
}

DType dtype(int code) { return static_cast<DType>(code); }

#ifdef AEVB_FAST_WITH_CUDA
// The CUDA kernels take the CPU kernels' arguments with the buffers' device and the stream to
// launch on (a cudaStream_t as an integer) in place of the thread count.
void bind_cuda(py::module_ m) {
  const auto nogil = py::call_guard<py::gil_scoped_release>();
  auto stream = [](uintptr_t s) { return reinterpret_cast<void*>(s); };
  m.def("device_count", &aevb::cuda::device_count);
  m.def("unavailable_reason", &aevb::cuda::unavailable_reason);
  m.def(
      "philox_words",
      [](uint64_t seed, uint64_t offset, int64_t n, uintptr_t out) {
        aevb::cuda::philox_words(seed, offset, n, ptr<uint32_t>(out));
      },
      nogil);
  m.def(
      "reparameterize_forward",
      [=](int t, uintptr_t mu, uintptr_t logvar, uintptr_t seed, uintptr_t z, uintptr_t kl, int64_t B, int64_t Z,
          int64_t L, bool mc, int device, uintptr_t s) {
        aevb::cuda::reparameterize_forward(dtype(t), ptr<const void>(mu), ptr<const void>(logvar),
                                           ptr<const int64_t>(seed), ptr<void>(z), ptr<void>(kl), B, Z, L, mc, device,
                                           stream(s));
      },
      nogil);
  m.def(
      "reparameterize_backward",
      [=](int t, uintptr_t grad_z, uintptr_t grad_kl, uintptr_t mu, uintptr_t logvar, uintptr_t seed,
          uintptr_t grad_mu, uintptr_t grad_logvar, int64_t B, int64_t Z, int64_t L, bool mc, int device, uintptr_t s) {
        aevb::cuda::reparameterize_backward(dtype(t), ptr<const void>(grad_z), ptr<const void>(grad_kl),
                                            ptr<const void>(mu), ptr<const void>(logvar), ptr<const int64_t>(seed),
                                            ptr<void>(grad_mu), ptr<void>(grad_logvar), B, Z, L, mc, device,
                                            stream(s));
      },
      nogil);
  m.def(
      "bernoulli_forward",
      [=](int t, int tx, uintptr_t logits, uintptr_t x, uintptr_t log_prob, int64_t N, int64_t Nx, int64_t D,
          int device, uintptr_t s) {
        aevb::cuda::bernoulli_forward(dtype(t), dtype(tx), ptr<const void>(logits), ptr<const void>(x),
                                      ptr<void>(log_prob), N, Nx, D, device, stream(s));
      },
      nogil);
  m.def(
      "bernoulli_backward",
      [=](int t, int tx, uintptr_t grad_log_prob, uintptr_t logits, uintptr_t x, uintptr_t grad, int64_t N,
          int64_t Nx, int64_t D, int device, uintptr_t s) {
        aevb::cuda::bernoulli_backward(dtype(t), dtype(tx), ptr<const void>(grad_log_prob), ptr<const void>(logits),
                                       ptr<const void>(x), ptr<void>(grad), N, Nx, D, device, stream(s));
      },
      nogil);
  m.def(
      "gaussian_forward",
      [=](int t, int tx, uintptr_t x, uintptr_t mean, uintptr_t logvar, uintptr_t log_prob, int64_t N, int64_t Nx,
          int64_t D, int device, uintptr_t s) {
        aevb::cuda::gaussian_forward(dtype(t), dtype(tx), ptr<const void>(x), ptr<const void>(mean),
                                     ptr<const void>(logvar), ptr<void>(log_prob), N, Nx, D, device, stream(s));
      },
      nogil);
  m.def(
      "gaussian_backward",
      [=](int t, int tx, uintptr_t grad_log_prob, uintptr_t x, uintptr_t mean, uintptr_t logvar, uintptr_t grad_mean,
          uintptr_t grad_logvar, int64_t N, int64_t Nx, int64_t D, int device, uintptr_t s) {
        aevb::cuda::gaussian_backward(dtype(t), dtype(tx), ptr<const void>(grad_log_prob), ptr<const void>(x),
                                      ptr<const void>(mean), ptr<const void>(logvar), ptr<void>(grad_mean),
                                      ptr<void>(grad_logvar), N, Nx, D, device, stream(s));
      },
      nogil);
}
#endif

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "aevb_fast native kernels (CPU; CUDA when built with nvcc)";
  const auto nogil = py::call_guard<py::gil_scoped_release>();

  m.def(
      "reparameterize_forward",
      [](int t, uintptr_t mu, uintptr_t logvar, uintptr_t seed, uintptr_t z, uintptr_t kl, int64_t B, int64_t Z,
         int64_t L, bool mc, int threads) {
        aevb::cpu::reparameterize_forward(dtype(t), ptr<const void>(mu), ptr<const void>(logvar),
                                          ptr<const int64_t>(seed), ptr<void>(z), ptr<void>(kl), B, Z, L, mc, threads);
      },
      nogil);
  m.def(
      "reparameterize_backward",
      [](int t, uintptr_t grad_z, uintptr_t grad_kl, uintptr_t mu, uintptr_t logvar, uintptr_t seed, uintptr_t grad_mu,
         uintptr_t grad_logvar, int64_t B, int64_t Z, int64_t L, bool mc, int threads) {
        aevb::cpu::reparameterize_backward(dtype(t), ptr<const void>(grad_z), ptr<const void>(grad_kl),
                                           ptr<const void>(mu), ptr<const void>(logvar), ptr<const int64_t>(seed),
                                           ptr<void>(grad_mu), ptr<void>(grad_logvar), B, Z, L, mc, threads);
      },
      nogil);
  m.def(
      "bernoulli_forward",
      [](int t, int tx, uintptr_t logits, uintptr_t x, uintptr_t log_prob, int64_t N, int64_t Nx, int64_t D,
         int threads) {
        return aevb::cpu::bernoulli_forward(dtype(t), dtype(tx), ptr<const void>(logits), ptr<const void>(x),
                                            ptr<void>(log_prob), N, Nx, D, threads);
      },
      nogil);
  m.def(
      "bernoulli_backward",
      [](int t, int tx, uintptr_t grad_log_prob, uintptr_t logits, uintptr_t x, uintptr_t grad, int64_t N, int64_t Nx,
         int64_t D, int threads) {
        aevb::cpu::bernoulli_backward(dtype(t), dtype(tx), ptr<const void>(grad_log_prob), ptr<const void>(logits),
                                      ptr<const void>(x), ptr<void>(grad), N, Nx, D, threads);
      },
      nogil);
  m.def(
      "gaussian_forward",
      [](int t, int tx, uintptr_t x, uintptr_t mean, uintptr_t logvar, uintptr_t log_prob, int64_t N, int64_t Nx,
         int64_t D, int threads) {
        aevb::cpu::gaussian_forward(dtype(t), dtype(tx), ptr<const void>(x), ptr<const void>(mean),
                                    ptr<const void>(logvar), ptr<void>(log_prob), N, Nx, D, threads);
      },
      nogil);
  m.def(
      "gaussian_backward",
      [](int t, int tx, uintptr_t grad_log_prob, uintptr_t x, uintptr_t mean, uintptr_t logvar, uintptr_t grad_mean,
         uintptr_t grad_logvar, int64_t N, int64_t Nx, int64_t D, int threads) {
        aevb::cpu::gaussian_backward(dtype(t), dtype(tx), ptr<const void>(grad_log_prob), ptr<const void>(x),
                                     ptr<const void>(mean), ptr<const void>(logvar), ptr<void>(grad_mean),
                                     ptr<void>(grad_logvar), N, Nx, D, threads);
      },
      nogil);
  m.def(
      "adagrad_step",
      [](int t, uintptr_t param, uintptr_t grad, uintptr_t sum, int64_t n, double lr, double weight_decay, double eps,
         int threads) {
        aevb::cpu::adagrad_step(dtype(t), ptr<void>(param), ptr<const void>(grad), ptr<void>(sum), n, lr, weight_decay,
                                eps, threads);
      },
      nogil);
  m.def(
      "philox_words",
      [](uint64_t seed, uint64_t offset, int64_t n, uintptr_t out) {
        aevb::cpu::philox_words(seed, offset, n, ptr<uint32_t>(out));
      },
      nogil);
  m.def(
      "philox_normal",
      [](uint64_t seed, uint64_t offset, int64_t n, uintptr_t out) {
        aevb::cpu::philox_normal(seed, offset, n, ptr<float>(out));
      },
      nogil);
  m.def("simd_level", &aevb::cpu::simd_level);
  m.def("pool_workers", &aevb::cpu::pool_workers, "Worker threads the CPU kernels have started");
  m.def(
      "empty_on_huge_pages",
      [](int t, const std::vector<int64_t>& shape) {
        return py::capsule(aevb::cpu::empty_on_huge_pages(dtype(t), shape), "dltensor", [](PyObject* capsule) {
          // torch.from_dlpack renames the capsule it takes over to "used_dltensor"; an unused one
          // still owns its tensor.
          if (PyCapsule_IsValid(capsule, "dltensor")) {
            auto* tensor = static_cast<aevb::cpu::DLManagedTensor*>(PyCapsule_GetPointer(capsule, "dltensor"));
            tensor->deleter(tensor);
          }
        });
      },
      "A DLPack capsule of an uninitialised contiguous CPU tensor on transparent huge pages");
  m.def("cached_bytes", &aevb::cpu::cached_bytes, "Bytes of freed output buffers kept for reuse");
  m.def("empty_cache", &aevb::cpu::empty_cache, "Frees the output buffers kept for reuse", nogil);
  m.def("set_cache_limit", &aevb::cpu::set_cache_limit, "Sets the cache's limit in bytes; returns the old one");

  py::dict build;
#if defined(__clang__)
  build["compiler"] = std::string("Clang ") + __clang_version__;
#else
  build["compiler"] = std::string("GCC ") + __VERSION__;
#endif
#ifdef AEVB_FAST_WITH_CUDA
  build["cuda"] = aevb::cuda::runtime_version();
  build["cuda_architectures"] = std::string(AEVB_FAST_CUDA_ARCHITECTURES);
  bind_cuda(m.def_submodule("cuda", "The CUDA kernels and runtime probe"));
#else
  build["cuda"] = 0;
  build["cuda_architectures"] = std::string();
#endif
#ifdef AEVB_FAST_WERROR
  build["warnings_as_errors"] = true;
#else
  build["warnings_as_errors"] = false;
#endif
  m.attr("build") = build;
}
