// The fused CPU kernels. Torch-free: raw pointers to contiguous row-major buffers, int64 sizes,
// dtype codes (dtype.h) and the thread count to use. "Row" outputs (KL, log-likelihoods) are
// double for float64 values and float otherwise; gradients have the values' dtype.
#pragma once

#include <cstdint>

#include "dtype.h"

namespace aevb::cpu {

// z[l, b, :] = mu[b] + exp(logvar[b] / 2) * eps[l, b, :], eps[l, b, j] = randn(seed, (l*B + b)*Z + j).
// mc = false: kl[b] = KL(q(z|x_b) || N(0, I)) (analytic, estimator B).
// mc = true:  kl[l, b] = log q(z_l | x_b) - log p(z_l) (estimator A, one term per sample).
void reparameterize_forward(DType t, const void* mu, const void* logvar, const int64_t* seed, void* z, void* kl,
                            int64_t B, int64_t Z, int64_t L, bool mc, int threads);

// Gradients of sum(grad_z * z) + sum(grad_kl * kl) with respect to mu and logvar; eps is regenerated
// from the seed. grad_z and grad_kl may be null (no gradient reaches that output).
void reparameterize_backward(DType t, const void* grad_z, const void* grad_kl, const void* mu, const void* logvar,
                             const int64_t* seed, void* grad_mu, void* grad_logvar, int64_t B, int64_t Z, int64_t L,
                             bool mc, int threads);

// The likelihoods' forward passes make the per-row values only; their backward passes recompute the
// gradient from the inputs and scale it by the row's upstream gradient g[n] (a row output's dtype).
// Storing the gradient in the forward instead would cost one more [N, D] buffer alive between the
// passes, written and read again; recomputing costs one exp per element.

// log_prob[n] = sum_d x*a - softplus(a) with a = logits[n, d] and x = x[n % Nx, d]. Returns how many
// targets lie outside [0, 1].
int64_t bernoulli_forward(DType t, DType tx, const void* logits, const void* x, void* log_prob, int64_t N, int64_t Nx,
                          int64_t D, int threads);

// grad[n, d] = g[n] (x - sigmoid(a)).
void bernoulli_backward(DType t, DType tx, const void* grad_log_prob, const void* logits, const void* x, void* grad,
                        int64_t N, int64_t Nx, int64_t D, int threads);

// log_prob[n] = sum_d log N(x; mean, exp(logvar)), x = x[n % Nx, d].
void gaussian_forward(DType t, DType tx, const void* x, const void* mean, const void* logvar, void* log_prob, int64_t N,
                      int64_t Nx, int64_t D, int threads);

// grad_mean[n, d] = g[n] (x - mean) exp(-logvar),  grad_logvar[n, d] = g[n] ((x - mean)^2 exp(-logvar) - 1) / 2.
void gaussian_backward(DType t, DType tx, const void* grad_log_prob, const void* x, const void* mean,
                       const void* logvar, void* grad_mean, void* grad_logvar, int64_t N, int64_t Nx, int64_t D,
                       int threads);

// One Adagrad step of n parameters (lr_decay = 0), denormals flushed to zero (adagrad.cpp):
// g = grad + weight_decay * param, sum += g^2, param -= lr * g / (sqrt(sum) + eps). float32 or float64.
void adagrad_step(DType t, void* param, const void* grad, void* sum, int64_t n, double lr, double weight_decay,
                  double eps, int threads);

// The four Philox4x32-10 words at counters offset .. offset + n - 1, key seed: out[4 * i + k].
void philox_words(uint64_t seed, uint64_t offset, int64_t n, uint32_t* out);

// randn(seed, offset + i) for i < n, as tl.randn computes it.
void philox_normal(uint64_t seed, uint64_t offset, int64_t n, float* out);

// The clone the loader picked for this CPU: "x86-64-v4", "x86-64-v3" or "default".
const char* simd_level();

}  // namespace aevb::cpu
