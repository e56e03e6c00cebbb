// Large kernel outputs on transparent huge pages, handed to Python as DLPack tensors, and a cache of
// freed ones.
//
// Why: the first touch of a fresh multi-megabyte buffer costs one page fault per 4 KiB page, which
// on the CI machine took as long as the kernel that fills it (about 90 ms for 200 MB; glibc hands
// out fresh mappings from 32 MiB on). 2 MiB pages (madvise MADV_HUGEPAGE, honoured where
// transparent huge pages are "madvise" or "always") fault several times faster but not reliably
// (direct compaction stalled some faults there); reusing a freed buffer faults not at all. So freed
// buffers are kept, by size, up to AEVB_FAST_CPU_CACHE_MB (default 1024; 0 turns the cache off), as
// a GPU caching allocator does; aevb_fast.empty_cache() hands them back to the system.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "dtype.h"

namespace aevb::cpu {

// DLPack's stable C ABI (dmlc/dlpack, v0.8), the parts used here.
struct DLDevice {
  int32_t device_type;  // kDLCPU = 1
  int32_t device_id;
};
struct DLDataType {
  uint8_t code;  // kDLFloat = 2, kDLBfloat = 4
  uint8_t bits;
  uint16_t lanes;
};
struct DLTensor {
  void* data;
  DLDevice device;
  int32_t ndim;
  DLDataType dtype;
  int64_t* shape;
  int64_t* strides;  // null: compact row-major
  uint64_t byte_offset;
};
struct DLManagedTensor {
  DLTensor dl_tensor;
  void* manager_ctx;
  void (*deleter)(DLManagedTensor* self);
};

// A contiguous, uninitialised tensor of `shape` and floating dtype `t` whose storage is aligned to
// 2 MiB and advised to use huge pages: a cached buffer of the same size if there is one. Its
// deleter returns the buffer to the cache, or frees it when the cache is full.
DLManagedTensor* empty_on_huge_pages(DType t, const std::vector<int64_t>& shape);

// Bytes held by the cache; its limit (set_cache_limit frees what no longer fits and returns the old
// limit); handing every cached buffer back.
size_t cached_bytes();
size_t set_cache_limit(size_t bytes);
void empty_cache();

}  // namespace aevb::cpu
