// Work splitting shared by the CPU kernels. Rows are cut into fixed chunks of kChunk columns;
// each term is computed in the math type and summed in double (SIMD lanes within a chunk, then
// chunk sums in chunk order), so a row sum is accurate and depends on the data alone, never on
// the thread count. (float32 partial sums of 1024 equal terms were already off by 1e-5.)
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <vector>

// Per-function ISA clones, chosen at load time. OpenMP outlines parallel regions into functions
// that do not inherit the clones, so the hot loops live in AEVB_SIMD functions that the regions
// call once per chunk.
#if defined(__x86_64__) && !defined(__clang__)
#define AEVB_SIMD __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define AEVB_SIMD
#endif

namespace aevb::cpu {

constexpr int64_t kChunk = 1024;

// Below this many elements (about 10 us of Bernoulli work) the kernels stay on one thread: a
// warm second thread already paid off at 1,568 elements, but waking a sleeping one costs about
// as much as this.
constexpr int64_t kMinParallelElements = 1 << 12;

inline int threads_for(int64_t elements, int threads) {
  return elements < kMinParallelElements ? 1 : std::max(1, threads);
}

inline int64_t num_chunks(int64_t cols) { return std::max<int64_t>(1, (cols + kChunk - 1) / kChunk); }

// For each (row, chunk) unit calls unit(row, begin, end, partial) with `width` doubles to fill,
// then writes out[w * rows + row] = sum over the row's chunks of partial[w], in chunk order.
// `threads` is the team size, from threads_for.
template <typename R, typename Unit>
void reduce_rows(int64_t rows, int64_t cols, int64_t width, R* out, int threads, Unit&& unit) {
  const int64_t chunks = num_chunks(cols);
  const int64_t units = rows * chunks;
  std::vector<double> partial(static_cast<size_t>(units * width));
#pragma omp parallel num_threads(threads)
  {
#pragma omp for schedule(static)
    for (int64_t u = 0; u < units; ++u) {
      const int64_t row = u / chunks, begin = (u % chunks) * kChunk;
      unit(row, begin, std::min(cols, begin + kChunk), partial.data() + u * width);  // width may be 0
    }
#pragma omp for schedule(static)
    for (int64_t row = 0; row < rows; ++row) {
      for (int64_t w = 0; w < width; ++w) {
        double sum = 0.0;
        for (int64_t c = 0; c < chunks; ++c) sum += partial[(row * chunks + c) * width + w];
        out[w * rows + row] = static_cast<R>(sum);
      }
    }
  }
}

// Calls unit(row, begin, end) on every (row, chunk) unit; for element-wise kernels.
template <typename Unit>
void for_each_chunk(int64_t rows, int64_t cols, int threads, Unit&& unit) {
  const int64_t chunks = num_chunks(cols);
  const int64_t units = rows * chunks;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t u = 0; u < units; ++u) {
    const int64_t row = u / chunks, begin = (u % chunks) * kChunk;
    unit(row, begin, std::min(cols, begin + kChunk));
  }
}

}  // namespace aevb::cpu
