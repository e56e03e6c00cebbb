// Device discovery and the Philox self-test kernel (csrc/common/philox.h compiled by nvcc).
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "../common/philox.h"
#include "runtime.h"

namespace aevb::cuda {
namespace {

void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(status));
}

__global__ void philox_words_kernel(uint64_t seed, uint64_t offset, int64_t n, uint32_t* out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  philox_at(seed, offset + static_cast<uint64_t>(i), out[4 * i], out[4 * i + 1], out[4 * i + 2], out[4 * i + 3]);
}

}  // namespace

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error so later calls start clean
    return 0;
  }
  return n;
}

std::string unavailable_reason() {
  int n = 0;
  const cudaError_t status = cudaGetDeviceCount(&n);
  if (status != cudaSuccess) {
    cudaGetLastError();
    return cudaGetErrorString(status);
  }
  return n > 0 ? "" : "no CUDA device";
}

int runtime_version() { return CUDART_VERSION; }

void philox_words(uint64_t seed, uint64_t offset, int64_t n, uint32_t* out) {
  if (n <= 0) return;
  uint32_t* device = nullptr;
  const size_t bytes = static_cast<size_t>(n) * 4 * sizeof(uint32_t);
  check(cudaMalloc(&device, bytes), "cudaMalloc");
  const int threads = 256;
  const auto blocks = static_cast<unsigned>((n + threads - 1) / threads);
  philox_words_kernel<<<blocks, threads>>>(seed, offset, n, device);
  cudaError_t status = cudaGetLastError();
  if (status == cudaSuccess) status = cudaMemcpy(out, device, bytes, cudaMemcpyDeviceToHost);
  cudaFree(device);
  check(status, "philox_words_kernel");
}

}  // namespace aevb::cuda
