// aevb_fast._C: binds the torch-free kernels. Buffers travel as integer addresses (a tensor's
// data_ptr()), dtypes as the codes of csrc/common/dtype.h (dtype_codes); the GIL is released while a kernel runs.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
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

// A code outside the enum would send a kernel down no branch of its dtype dispatch.
DType dtype(int code) {
  if (code < 0 || code > static_cast<int>(DType::b8)) {
    throw py::value_error("aevb_fast._C: dtype code " + std::to_string(code) + " is not one of csrc/common/dtype.h's");
  }
  return static_cast<DType>(code);
}

// How each C++ parameter type crosses from Python: pointers as integer addresses, dtypes as their
// codes (checked), sizes as int64 (checked >= 0: every size and count of every kernel is), the rest
// as they are. `alignment` is what a typed pointer's address must be a multiple of; an untyped
// buffer's (0 here) comes from its dtype (Buffers).
template <typename T>
constexpr size_t alignment_of() {
  if constexpr (std::is_void_v<T>) {
    return 0;
  } else {
    return alignof(T);
  }
}

template <typename T>
struct Arg {
  using type = T;
  static constexpr size_t alignment = 1;
  static T from(T value, const char*, size_t) { return value; }
};
template <typename T>
struct Arg<T*> {
  using type = uintptr_t;
  static constexpr size_t alignment = alignment_of<T>();
  static T* from(uintptr_t address, const char*, size_t) { return reinterpret_cast<T*>(address); }
};
template <>
struct Arg<DType> {
  using type = int;
  static constexpr size_t alignment = 1;
  static DType from(int code, const char*, size_t) { return dtype(code); }
};
template <>
struct Arg<int64_t> {
  using type = int64_t;
  static constexpr size_t alignment = 1;
  static int64_t from(int64_t size, const char* kernel, size_t index) {
    if (size < 0) {
      throw py::value_error(std::string("aevb_fast._C.") + kernel + ": argument " + std::to_string(index) +
                            " is a size or count, got " + std::to_string(size) + " (see its docstring)");
    }
    return size;
  }
};

// The alignment each buffer of one kernel needs: a typed pointer its type's, an untyped one its
// dtype's element size, read from the parameter names as kernel_list.h sets them out. Targets `x`
// hold dtype `tx`; the row outputs and their gradients are double beside float64 values and float
// otherwise; every other buffer holds dtype `t` (a CUDA `stream` is a handle, not a buffer). A misaligned address would
// make every element access undefined (and fault in the CUDA kernels' vector loads); a tensor's data_ptr() never is.
class Buffers {
 public:
  Buffers(const char* signature, const std::vector<size_t>& alignments) {
    std::vector<std::string> names;
    std::string parameters(signature + 1, std::string(signature).size() - 2);  // without "(" and ")"
    for (size_t begin = 0; begin <= parameters.size();) {
      size_t end = std::min(parameters.find(',', begin), parameters.size());
      std::string parameter = parameters.substr(begin, end - begin);
      names.push_back(parameter.substr(parameter.find_last_of(" *") + 1));
      begin = end + 1;
    }
    auto index_of = [&](const char* name) {
      return static_cast<int>(std::find(names.begin(), names.end(), name) - names.begin());
    };
    const int t = index_of("t"), tx = index_of("tx");
    for (size_t i = 0; i < alignments.size(); ++i) {
      if (alignments[i] != 0) {
        if (alignments[i] > 1) buffers_.push_back({i, names[i], -1, false, alignments[i]});
        continue;
      }
      const std::string& name = names[i];
      if (name == "stream") continue;  // a CUDA stream handle, not a buffer
      const int dtype_index = name == "x" ? tx : t;
      if (dtype_index == static_cast<int>(names.size())) {
        throw std::logic_error(std::string("aevb_fast._C: no dtype parameter for buffer ") + name + " in " + signature);
      }
      const bool row = name == "log_prob" || name == "kl" || name == "grad_log_prob" || name == "grad_kl";
      buffers_.push_back({i, name, dtype_index, row, 0});
    }
  }

  // Throws ValueError naming the first misaligned buffer; `raw` holds every argument as an integer.
  void check(const char* kernel, const uint64_t* raw) const {
    for (const Buffer& b : buffers_) {
      size_t alignment = b.alignment;
      if (alignment == 0) {
        const DType t = dtype(static_cast<int>(raw[b.dtype_index]));
        alignment = b.row ? (t == DType::f64 ? 8 : 4) : aevb::element_size(t);
      }
      if (raw[b.index] % alignment != 0) {
        throw py::value_error(std::string("aevb_fast._C.") + kernel + ": argument " + std::to_string(b.index) + " (" +
                              b.name + ") at address " + std::to_string(raw[b.index]) + " is not a multiple of " +
                              std::to_string(alignment) + ", the alignment of its elements");
      }
    }
  }

 private:
  struct Buffer {
    size_t index;
    std::string name;
    int dtype_index;  // the DType argument giving an untyped buffer's element type
    bool row;
    size_t alignment;  // a typed buffer's; 0 for an untyped one
  };
  std::vector<Buffer> buffers_;
};

template <typename T>
uint64_t raw(T value) {
  if constexpr (std::is_integral_v<T>) {
    return static_cast<uint64_t>(value);
  } else {
    return 0;
  }
}

template <typename R, typename... A, size_t... I>
void bind(py::module_& m, const char* name, R (*kernel)(A...), const char* signature, std::index_sequence<I...>) {
  Buffers buffers(signature, {Arg<A>::alignment...});
  m.def(
      name,
      [kernel, name, buffers](typename Arg<A>::type... args) -> R {
        const uint64_t raw_args[] = {raw(args)..., 0};
        auto converted = std::make_tuple(Arg<A>::from(args, name, I)...);
        buffers.check(name, raw_args);
        return std::apply(kernel, converted);
      },
      signature, py::call_guard<py::gil_scoped_release>());
}

// Binds `kernel` as `name`, its arguments converted and checked by Arg and Buffers, its C++
// parameters its docstring; the GIL released while it runs.
template <typename R, typename... A>
void bind(py::module_& m, const char* name, R (*kernel)(A...), const char* signature) {
  bind(m, name, kernel, signature, std::index_sequence_for<A...>{});
}

#ifdef AEVB_FAST_WITH_CUDA
// The CUDA kernels take the CPU kernels' arguments with the buffers' device and the stream to
// launch on (a cudaStream_t as an integer) in place of the thread count.
void bind_cuda(py::module_ m) {
  m.def("device_count", &aevb::cuda::device_count);
  m.def("unavailable_reason", &aevb::cuda::unavailable_reason);
  bind(m, "philox_words", &aevb::cuda::philox_words, "(uint64_t seed, uint64_t offset, int64_t n, uint32_t* out)");
#define AEVB_KERNEL(ret, name, ...) bind(m, #name, &aevb::cuda::name, "(" #__VA_ARGS__ ", int device, void* stream)");
#include "common/kernel_list.h"
#undef AEVB_KERNEL
}
#endif

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "aevb_fast native kernels (CPU; CUDA when built with nvcc)";
  const auto nogil = py::call_guard<py::gil_scoped_release>();

#define AEVB_KERNEL(ret, name, ...) bind(m, #name, &aevb::cpu::name, "(" #__VA_ARGS__ ", int threads)");
#include "common/kernel_list.h"
#undef AEVB_KERNEL
  // The names of the list's kernels, which the CUDA submodule binds too where it is built.
  static const char* const kernel_names[] = {
#define AEVB_KERNEL(ret, name, ...) #name,
#include "common/kernel_list.h"
#undef AEVB_KERNEL
  };
  py::list names;
  for (const char* name : kernel_names) names.append(name);
  m.attr("kernels") = py::tuple(names);
  bind(m, "adagrad_step", &aevb::cpu::adagrad_step,
       "(DType t, void* param, const void* grad, void* sum, int64_t n, double lr, double weight_decay, double eps, "
       "int threads)");
  bind(m, "philox_words", &aevb::cpu::philox_words, "(uint64_t seed, uint64_t offset, int64_t n, uint32_t* out)");
  bind(m, "philox_normal", &aevb::cpu::philox_normal, "(uint64_t seed, uint64_t offset, int64_t n, float* out)");
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

  // The dtype codes under torch's names: aevb_fast.ops._native reads them from here.
  py::dict codes;
  codes["float32"] = static_cast<int>(DType::f32);
  codes["float64"] = static_cast<int>(DType::f64);
  codes["float16"] = static_cast<int>(DType::f16);
  codes["bfloat16"] = static_cast<int>(DType::bf16);
  codes["uint8"] = static_cast<int>(DType::u8);
  codes["bool"] = static_cast<int>(DType::b8);
  m.attr("dtype_codes") = codes;
}
