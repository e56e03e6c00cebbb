// Output buffers on transparent huge pages, handed to Python as DLPack tensors.
//
// Why: the first touch of a fresh multi-megabyte buffer costs one page fault per 4 KiB page, which
// on these machines took as long as the kernel that fills it (about 90 ms for 200 MB). Asking the
// kernel for 2 MiB pages (madvise MADV_HUGEPAGE, honoured where transparent huge pages are set to
// "madvise" or "always") cuts that several-fold. The memory goes back to the system when the
// tensor is freed; nothing is cached.
#pragma once

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
// 2 MiB and advised to use huge pages; its deleter frees it.
DLManagedTensor* empty_on_huge_pages(DType t, const std::vector<int64_t>& shape);

}  // namespace aevb::cpu
