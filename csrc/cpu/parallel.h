// Work splitting shared by the CPU kernels. Rows are cut into fixed chunks of kChunk columns;
// each term is computed in the math type and summed in double (SIMD lanes within a chunk, then
// chunk sums in chunk order), so a row sum is accurate and depends on the data alone, never on
// the thread count. (float32 partial sums of 1024 equal terms were already off by 1e-5.)
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "thread_pool.h"

// Per-function ISA clones, chosen at load time. The hot loops live in AEVB_SIMD functions that the
// work splitting below calls once per chunk, so that one clone choice serves every thread.
#if defined(__x86_64__) && !defined(__clang__)
#define AEVB_SIMD __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define AEVB_SIMD
#endif

namespace aevb::cpu {

constexpr int64_t kChunk = 1024;

// Each thread gets at least this many elements. Through autograd (Bernoulli forward + backward,
// 2 cores) a second thread paid from [100, 784] on (128 -> 102 us) once idle workers kept waiting
// for the next job for 300 us (thread_pool.cpp); while they slept after ~20 us instead, waking
// one cost more than it gained below ~300,000 elements.
constexpr int64_t kMinElementsPerThread = 1 << 14;

// The threads worth using for `elements` of work, at most `threads` (torch's thread count).
inline int threads_for(int64_t elements, int threads) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(threads, elements / kMinElementsPerThread)));
}

inline int64_t num_chunks(int64_t cols) { return std::max<int64_t>(1, (cols + kChunk - 1) / kChunk); }

// Units claimed at a time: about 16 claims per thread so that a late thread finds work left, at
// most 32 chunks so that one claim stays below ~100 us (what the others wait for at the end if its
// thread is descheduled mid-claim).
inline int64_t grain_for(int64_t units, int threads) {
  return std::clamp<int64_t>(units / (16 * int64_t{threads}), 1, 32);
}

// Rows of at most kChunk columns go to a unit whole and several at a time, up to kChunk elements:
// work that runs over the unit's elements at once (the noise above all) then runs over long
// vectors instead of one short row (a [100, 20] reparameterize spent most of its time in the
// scalar tails of 20-element rows). Longer rows are cut into chunks, one row per unit.
inline int64_t rows_per_unit(int64_t cols) { return cols >= kChunk ? 1 : kChunk / std::max<int64_t>(cols, 1); }

// Calls unit(first_row, last_row, begin, end) on every unit of rows [first_row, last_row) and
// columns [begin, end): several whole rows, or one chunk of one row. `group` is rows_per_unit(cols)
// or 1; `threads` is from threads_for.
template <typename Unit>
void for_each_row_group(int64_t rows, int64_t cols, int64_t group, int threads, Unit&& unit) {
  const int64_t chunks = num_chunks(cols);
  const int64_t units = (rows + group - 1) / group * chunks;
  parallel_for(units, grain_for(units, threads), threads - 1, [&](int64_t first, int64_t last) {
    for (int64_t u = first; u < last; ++u) {
      const int64_t row = (u / chunks) * group, begin = (u % chunks) * kChunk;
      unit(row, std::min(rows, row + group), begin, std::min(cols, begin + kChunk));
    }
  });
}

// for_each_row_group with `width` doubles per row of each unit to fill (row r's at
// partial + (r - first_row) * width): unit(first_row, last_row, begin, end, partial); then writes
// out[w * rows + row] = sum over the row's chunks of its partial[w], in chunk order.
template <typename R, typename Unit>
void reduce_row_groups(int64_t rows, int64_t cols, int64_t group, int64_t width, R* out, int threads, Unit&& unit) {
  const int64_t chunks = num_chunks(cols);
  std::vector<double> partial(static_cast<size_t>(rows * chunks * width));
  for_each_row_group(rows, cols, group, threads, [&](int64_t row, int64_t last, int64_t begin, int64_t end) {
    // group > 1 only where a row is one chunk, so the group's partials are consecutive
    unit(row, last, begin, end, partial.data() + (row * chunks + begin / kChunk) * width);  // width may be 0
  });
  for (int64_t row = 0; row < rows; ++row) {
    for (int64_t w = 0; w < width; ++w) {
      double sum = 0.0;
      for (int64_t c = 0; c < chunks; ++c) sum += partial[(row * chunks + c) * width + w];
      out[w * rows + row] = static_cast<R>(sum);
    }
  }
}

// reduce_row_groups one row at a time: unit(row, begin, end, partial).
template <typename R, typename Unit>
void reduce_rows(int64_t rows, int64_t cols, int64_t width, R* out, int threads, Unit&& unit) {
  reduce_row_groups(
      rows, cols, 1, width, out, threads,
      [&](int64_t row, int64_t, int64_t begin, int64_t end, double* partial) { unit(row, begin, end, partial); });
}

// for_each_row_group one row at a time: unit(row, begin, end).
template <typename Unit>
void for_each_chunk(int64_t rows, int64_t cols, int threads, Unit&& unit) {
  for_each_row_group(rows, cols, 1, threads,
                     [&](int64_t row, int64_t, int64_t begin, int64_t end) { unit(row, begin, end); });
}

}  // namespace aevb::cpu
