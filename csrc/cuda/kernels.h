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

// z[l, b, :] = mu[b] + exp(logvar[b] / 2) * eps[l, b, :], eps[l, b, j] = randn(*seed, (l*B + b)*Z + j);
// seed is a device pointer, so CUDA-graph replays draw the noise of the seed tensor's current value.
// kl [B] (analytic) or [L, B] (mc) as in the CPU kernel.
void reparameterize_forward(DType t, const void* mu, const void* logvar, const int64_t* seed, void* z, void* kl,
                            int64_t B, int64_t Z, int64_t L, bool mc, int device, void* stream);

// grad_z and grad_kl may be null (no gradient reaches that output).
void reparameterize_backward(DType t, const void* grad_z, const void* grad_kl, const void* mu, const void* logvar,
                             const int64_t* seed, void* grad_mu, void* grad_logvar, int64_t B, int64_t Z, int64_t L,
                             bool mc, int device, void* stream);

// Targets are not range-checked here: reporting a violation would cost a device sync.
void bernoulli_forward(DType t, DType tx, const void* logits, const void* x, void* log_prob, int64_t N, int64_t Nx,
                       int64_t D, int device, void* stream);

void bernoulli_backward(DType t, DType tx, const void* grad_log_prob, const void* logits, const void* x, void* grad,
                        int64_t N, int64_t Nx, int64_t D, int device, void* stream);

void gaussian_forward(DType t, DType tx, const void* x, const void* mean, const void* logvar, void* log_prob, int64_t N,
                      int64_t Nx, int64_t D, int device, void* stream);

void gaussian_backward(DType t, DType tx, const void* grad_log_prob, const void* x, const void* mean,
                       const void* logvar, void* grad_mean, void* grad_logvar, int64_t N, int64_t Nx, int64_t D,
                       int device, void* stream);

}  // namespace aevb::cuda
