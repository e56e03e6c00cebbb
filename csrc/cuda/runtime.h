// The CUDA runtime probe, callable from host code compiled without nvcc. The module
// links cudart statically, so it imports on machines with no GPU or driver; these calls then
// report zero devices instead of failing.
#pragma once

#include <cstdint>
#include <string>

namespace aevb::cuda {

// Number of usable CUDA devices; 0 when there is no driver or device.
int device_count();

// Why device_count() is 0, or "" when a device is usable.
std::string unavailable_reason();

// The CUDA runtime version the extension was built against, e.g. 13000.
int runtime_version();

// philox_words on the current device (see csrc/cpu/kernels.h): proves the generator compiles
// and agrees on the GPU. out is a host buffer of 4 * n words.
void philox_words(uint64_t seed, uint64_t offset, int64_t n, uint32_t* out);

}  // namespace aevb::cuda
