// The fused CUDA kernels, callable from host code compiled without nvcc. Torch-free, like the CPU
// kernels (csrc/cpu/kernels.h, whose formulas these share): device pointers to contiguous
// row-major buffers, int64 sizes, dtype codes (csrc/common/dtype.h), the CUDA device the buffers
// live on and the stream to launch on (torch.cuda.current_stream().cuda_stream). Launches are
// asynchronous: nothing here waits for the device or copies to the host. Math in float32 (float64
// for float64 values); "row" outputs are float32 (float64 for float64 values).
#pragma once

#include <cstdint>

#include "../common/dtype.h"

namespace aevb::cuda {

// The kernels of csrc/common/kernel_list.h, launched on `stream` (a cudaStream_t) of `device`. The
// seed is a device pointer, so CUDA-graph replays draw the noise of the seed tensor's current value;
// the Bernoulli targets are not range-checked (bernoulli_forward returns 0): reporting a violation
// would cost a device sync.
#define AEVB_KERNEL(ret, name, ...) ret name(__VA_ARGS__, int device, void* stream);
#include "../common/kernel_list.h"
#undef AEVB_KERNEL

}  // namespace aevb::cuda
