#include "huge_pages.h"

#include <sys/mman.h>

#include <cstdlib>
#include <new>
#include <stdexcept>

namespace aevb::cpu {
namespace {

constexpr size_t kHugePage = size_t(2) << 20;

struct Owner {
  DLManagedTensor tensor;
  std::vector<int64_t> shape;
};

DLDataType dl_dtype(DType t) {
  switch (t) {
    case DType::f32:
      return {2, 32, 1};
    case DType::f64:
      return {2, 64, 1};
    case DType::f16:
      return {2, 16, 1};
    case DType::bf16:
      return {4, 16, 1};
    default:
      throw std::invalid_argument("empty_on_huge_pages: not a floating dtype code");
  }
}

void release(DLManagedTensor* self) {
  Owner* owner = static_cast<Owner*>(self->manager_ctx);
  std::free(self->dl_tensor.data);
  delete owner;
}

}  // namespace

DLManagedTensor* empty_on_huge_pages(DType t, const std::vector<int64_t>& shape) {
  const DLDataType dtype = dl_dtype(t);
  size_t bytes = dtype.bits / 8;
  for (int64_t n : shape) bytes *= static_cast<size_t>(n);
  // aligned_alloc wants a multiple of the alignment; a whole number of huge pages also keeps the
  // tail of the buffer on a huge page.
  const size_t size = (bytes + kHugePage - 1) / kHugePage * kHugePage;
  void* data = std::aligned_alloc(kHugePage, size > 0 ? size : kHugePage);
  if (data == nullptr) throw std::bad_alloc();
  madvise(data, size, MADV_HUGEPAGE);  // advice only: without transparent huge pages it changes nothing
  Owner* owner = new Owner{{}, shape};
  owner->tensor.dl_tensor = {data, {1, 0}, static_cast<int32_t>(shape.size()), dtype, owner->shape.data(), nullptr, 0};
  owner->tensor.manager_ctx = owner;
  owner->tensor.deleter = release;
  return &owner->tensor;
}

}  // namespace aevb::cpu
