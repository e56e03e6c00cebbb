#include "huge_pages.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>

namespace aevb::cpu {
namespace {

constexpr size_t kHugePage = size_t(2) << 20;

// Freed buffers kept for reuse, keyed by size: a training step frees and allocates the same
// shapes every time, and a reused buffer is already faulted in. Never destroyed, so that tensors
// freed during interpreter shutdown still find it.
struct Cache {
  std::mutex mutex;
  std::multimap<size_t, void*> blocks;
  size_t bytes = 0;
  size_t limit = default_limit();

  static size_t default_limit() {
    const char* mib = std::getenv("AEVB_FAST_CPU_CACHE_MB");
    return (mib != nullptr ? std::stoull(mib) : size_t(1024)) << 20;
  }
};

Cache& cache() {
  static Cache* instance = new Cache();
  return *instance;
}

struct Owner {
  DLManagedTensor tensor;
  std::vector<int64_t> shape;
  size_t size;  // bytes reserved: whole huge pages
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

void* acquire(size_t size) {
  {
    Cache& c = cache();
    std::lock_guard<std::mutex> lock(c.mutex);
    auto it = c.blocks.find(size);
    if (it != c.blocks.end()) {
      void* data = it->second;
      c.blocks.erase(it);
      c.bytes -= size;
      return data;
    }
  }
  void* data = std::aligned_alloc(kHugePage, size);
  if (data == nullptr) throw std::bad_alloc();
  madvise(data, size, MADV_HUGEPAGE);  // advice only: without transparent huge pages it changes nothing
  return data;
}

void release(DLManagedTensor* self) {
  Owner* owner = static_cast<Owner*>(self->manager_ctx);
  void* data = self->dl_tensor.data;
  const size_t size = owner->size;
  delete owner;
  Cache& c = cache();
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    if (c.bytes + size <= c.limit) {
      c.blocks.emplace(size, data);
      c.bytes += size;
      return;
    }
  }
  std::free(data);
}

}  // namespace

DLManagedTensor* empty_on_huge_pages(DType t, const std::vector<int64_t>& shape) {
  const DLDataType dtype = dl_dtype(t);
  size_t bytes = dtype.bits / 8;
  for (int64_t n : shape) bytes *= static_cast<size_t>(n);
  // aligned_alloc wants a multiple of the alignment; a whole number of huge pages also keeps the
  // tail of the buffer on a huge page.
  const size_t size = std::max<size_t>(1, (bytes + kHugePage - 1) / kHugePage) * kHugePage;
  Owner* owner = new Owner{{}, shape, size};
  void* data;
  try {
    data = acquire(size);
  } catch (...) {
    delete owner;
    throw;
  }
  owner->tensor.dl_tensor = {data, {1, 0}, static_cast<int32_t>(shape.size()), dtype, owner->shape.data(), nullptr, 0};
  owner->tensor.manager_ctx = owner;
  owner->tensor.deleter = release;
  return &owner->tensor;
}

size_t cached_bytes() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  return c.bytes;
}

size_t set_cache_limit(size_t bytes) {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  const size_t previous = c.limit;
  c.limit = bytes;
  while (c.bytes > c.limit) {
    auto it = c.blocks.begin();
    std::free(it->second);
    c.bytes -= it->first;
    c.blocks.erase(it);
  }
  return previous;
}

void empty_cache() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  for (auto& [size, data] : c.blocks) std::free(data);
  c.blocks.clear();
  c.bytes = 0;
}

}  // namespace aevb::cpu
