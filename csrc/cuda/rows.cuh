// How every CUDA kernel here walks its rows: a block of 256 threads holds blockDim.y row groups of
// blockDim.x threads each (a power of two: part of a warp for narrow rows, whole warps for wide
// ones), and a row's threads take packs of V consecutive columns in a fixed order, 128-bit loads
// and stores where the buffers allow. Row sums go through warp
// shuffles and a fixed tree, never atomics, so a result depends only on the shape: the same inputs
// give the same bits on every run, whatever the alignment of the buffers. Indices are int64.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "dtype.cuh"

namespace aevb::cuda {

constexpr int kBlockThreads = 256;

// V elements of T, aligned so that a pack is one (or, for wide targets, two) vector accesses.
template <typename T, int V>
struct alignas(sizeof(T) * V) Pack {
  T v[V];
};

// Columns per pack for values of T: 16 bytes.
template <typename T>
constexpr int pack_size = 16 / sizeof(T);

// Calls f(row, valid) for each row of this thread's row group. Every thread of a block makes the
// same number of calls, so f may call row_sum (which synchronises the block).
template <typename F>
__device__ __forceinline__ void for_each_row(int64_t rows, F&& f) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.y;
  for (int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.y; first < rows; first += step) {
    const int64_t row = first + threadIdx.y;
    f(row, row < rows);
  }
}

// Calls f(j) for the first column j of each of this thread's packs in a row of `cols` columns.
template <int V, typename F>
__device__ __forceinline__ void for_each_pack(int64_t cols, F&& f) {
  for (int64_t j = static_cast<int64_t>(threadIdx.x) * V; j < cols; j += static_cast<int64_t>(blockDim.x) * V) f(j);
}

// Whether column j + k of a pack exists: always for ALIGNED launches (cols is a multiple of V).
template <bool ALIGNED>
__device__ __forceinline__ bool in_row(int64_t j, int k, int64_t cols) {
  return ALIGNED || j + k < cols;
}

// The pack at row[j .. j + V) as math values; columns past the row read as 0.
template <bool ALIGNED, int V, typename M, typename T>
__device__ __forceinline__ void load_pack(const T* __restrict__ row, int64_t j, int64_t cols, M (&out)[V]) {
  if constexpr (ALIGNED) {
    const Pack<T, V> pack = *reinterpret_cast<const Pack<T, V>*>(row + j);
#pragma unroll
    for (int k = 0; k < V; ++k) out[k] = load<M>(pack.v[k]);
  } else {
#pragma unroll
    for (int k = 0; k < V; ++k) out[k] = j + k < cols ? load<M>(row[j + k]) : M(0);
  }
}

template <bool ALIGNED, int V, typename T, typename M>
__device__ __forceinline__ void store_pack(T* __restrict__ row, int64_t j, int64_t cols, const M (&in)[V]) {
  if constexpr (ALIGNED) {
    Pack<T, V> pack;
#pragma unroll
    for (int k = 0; k < V; ++k) pack.v[k] = store<T>(in[k]);
    *reinterpret_cast<Pack<T, V>*>(row + j) = pack;
  } else {
#pragma unroll
    for (int k = 0; k < V; ++k) {
      if (j + k < cols) row[j + k] = store<T>(in[k]);
    }
  }
}

// One thread's running sum of its share of a row, compensated (Neumaier's variant of Kahan's
// summation): `sum` is the plain float sum, term by term, and `error` gathers what each addition
// rounded away, exactly (Fast2Sum, larger magnitude first). Why: a thread of a wide row adds
// thousands of terms (2^20 columns over 256 threads: 4096 each), and in plain float32 their
// roundings add up, to 2.2e-5 relative for 4096 terms of one sign; compensated, the error stays
// within a few ulps, in float32 (float64 is slow on most GPUs). It relies on IEEE adds in program
// order: nvcc does not reassociate without fast math, and there is no product here to fuse into an
// FMA. Callers add in the same order on the packed and the scalar path, so results stay
// independent of alignment.
template <typename A>
struct CompensatedSum {
  A sum = 0, error = 0;

  __device__ __forceinline__ void add(A y) {
    const A t = sum + y;
    error += fabs(sum) >= fabs(y) ? (sum - t) + y : (y - t) + sum;
    sum = t;
  }

  // The sum with its error folded in, for row_sum. A sum that overflowed or met an infinity or NaN
  // comes back as it is (its error is NaN then, from inf - inf): what plain summation gives.
  __device__ __forceinline__ A value() const { return isfinite(sum) ? sum + error : sum; }
};

// The sum of v over the threads of this row group, in every one of them. Synchronises the block
// when a row group spans warps: every thread of it must call this the same number of times.
template <typename A>
__device__ __forceinline__ A row_sum(A v) {
  __shared__ A partial[kBlockThreads / 32];
  // Within a warp: lanes that differ in the bits below the group width hold the same row.
  for (unsigned offset = min(blockDim.x, 32u) / 2; offset > 0; offset /= 2) {
    v += __shfl_xor_sync(0xffffffffu, v, offset);
  }
  if (blockDim.x <= 32) return v;
  const unsigned warps = blockDim.x / 32;
  const unsigned warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  A* group = partial + threadIdx.y * warps;
  if (lane == 0) group[warp] = v;
  __syncthreads();
  v = lane < warps ? group[lane] : A(0);
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  __syncthreads();  // before the next row's sums overwrite `partial`
  return v;
}

inline void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    throw std::runtime_error(std::string("aevb_fast CUDA kernel ") + what + ": " + cudaGetErrorString(status));
  }
}

// Whether every buffer read or written in packs is aligned to its pack and rows hold whole packs.
template <int V, typename... P>
bool packs_aligned(int64_t cols, const P*... buffers) {
  return cols % V == 0 && ((reinterpret_cast<uintptr_t>(buffers) % (sizeof(P) * V) == 0) && ...);
}

// Launches a row walk over [rows, cols] on `device` and `stream`: calls
// launch(aligned, grid, block, stream), aligned a std::bool_constant that says whether `packed`
// (the buffers accessed in packs of V) allow vector accesses, then checks the launch.
template <int V, typename Launch, typename... P>
void launch_rows(const char* name, int device, void* stream, int64_t rows, int64_t cols, Launch&& launch,
                 const P*... packed) {
  if (rows == 0) return;
  // This module links its own copy of the CUDA runtime, whose current device is not torch's.
  check(cudaSetDevice(device), name);
  const int64_t packs = (cols + V - 1) / V;
  int width = 1;  // threads per row: widen while each would still get two packs
  while (width < kBlockThreads && 2 * width < packs) width *= 2;
  const int64_t rows_per_block = kBlockThreads / width;
  const int64_t blocks = std::min<int64_t>((rows + rows_per_block - 1) / rows_per_block, INT32_MAX);
  const dim3 grid(static_cast<unsigned>(blocks)), block(width, static_cast<unsigned>(rows_per_block));
  const auto s = static_cast<cudaStream_t>(stream);
  if (packs_aligned<V>(cols, packed...)) {
    launch(std::true_type{}, grid, block, s);
  } else {
    launch(std::false_type{}, grid, block, s);
  }
  check(cudaGetLastError(), name);
}

}  // namespace aevb::cuda
