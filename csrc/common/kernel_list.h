// Every fused kernel that both native backends implement, declared once: an X-macro list, included
// where AEVB_KERNEL(return type, name, parameters...) is defined, and therefore without an include
// guard. From it csrc/cpu/kernels.h and csrc/cuda/kernels.h declare each kernel with their
// backend's trailing parameters (the thread count; the CUDA device and stream), csrc/bindings.cpp
// binds each kernel of both backends (checking the dtype codes and sizes), and the fuzz driver
// dispatches to a case per kernel (it does not link without one).
//
// Buffers are contiguous and row-major. "Row" outputs (KL, log-likelihoods) are double for float64
// values and float otherwise; gradients have the values' dtype. dtype codes: dtype.h.

// z[l, b, :] = mu[b] + exp(logvar[b] / 2) * eps[l, b, :], eps regenerated from seed = (key, first,
// rows), B rows of Z: eps[l, b, j] = randn(key, (l*rows + first + b)*Z + j).
// mc = false: kl[b] = KL(q(z|x_b) || N(0, I)) (analytic, estimator B).
// mc = true:  kl[l, b] = log q(z_l | x_b) - log p(z_l) (estimator A, one term per sample).
AEVB_KERNEL(void, reparameterize_forward, DType t, const void* mu, const void* logvar, const int64_t* seed, void* z,
            void* kl, int64_t B, int64_t Z, int64_t L, bool mc)

// Gradients of sum(grad_z * z) + sum(grad_kl * kl) with respect to mu and logvar; eps is regenerated
// from the seed. grad_z and grad_kl may be null (no gradient reaches that output). stl (with mc):
// the kl term's gradient through z alone, log q(z|x) taken at stopped mu and logvar ("sticking the
// landing", Roeder et al. 2017): d kl / d z = z - eps / sigma, and no direct d/dlogvar of -1/2.
AEVB_KERNEL(void, reparameterize_backward, DType t, const void* grad_z, const void* grad_kl, const void* mu,
            const void* logvar, const int64_t* seed, void* grad_mu, void* grad_logvar, int64_t B, int64_t Z, int64_t L,
            bool mc, bool stl)

// The likelihoods' forward passes make the per-row values only; their backward passes recompute the
// gradient from the inputs and scale it by the row's upstream gradient g[n] (a row output's dtype).
// Storing the gradient in the forward instead would cost one more [N, D] buffer alive between the
// passes, written and read again; recomputing costs one exp per element.

// log_prob[n] = sum_d x*a - softplus(a) with a = logits[n, d] and x = x[n % Nx, d]. Returns how many
// targets lie outside [0, 1] (the CPU kernel counts them; the CUDA kernel returns 0: a count there
// would cost a device sync).
AEVB_KERNEL(int64_t, bernoulli_forward, DType t, DType tx, const void* logits, const void* x, void* log_prob, int64_t N,
            int64_t Nx, int64_t D)

// grad[n, d] = g[n] (x - sigmoid(a)).
AEVB_KERNEL(void, bernoulli_backward, DType t, DType tx, const void* grad_log_prob, const void* logits, const void* x,
            void* grad, int64_t N, int64_t Nx, int64_t D)

// The continuous Bernoulli: log_prob[n] = sum_d x*a - softplus(a) + log C(a), C(a) = a / tanh(a/2)
// (continuous_bernoulli.h); targets as bernoulli_forward's, counted the same way.
AEVB_KERNEL(int64_t, continuous_bernoulli_forward, DType t, DType tx, const void* logits, const void* x, void* log_prob,
            int64_t N, int64_t Nx, int64_t D)

// grad[n, d] = g[n] (x - sigmoid(a) + 1/a - 1/sinh(a)).
AEVB_KERNEL(void, continuous_bernoulli_backward, DType t, DType tx, const void* grad_log_prob, const void* logits,
            const void* x, void* grad, int64_t N, int64_t Nx, int64_t D)

// log_prob[n] = sum_d log N(x; mean, exp(logvar)), x = x[n % Nx, d].
AEVB_KERNEL(void, gaussian_forward, DType t, DType tx, const void* x, const void* mean, const void* logvar,
            void* log_prob, int64_t N, int64_t Nx, int64_t D)

// grad_mean[n, d] = g[n] (x - mean) exp(-logvar),  grad_logvar[n, d] = g[n] ((x - mean)^2 exp(-logvar) - 1) / 2.
AEVB_KERNEL(void, gaussian_backward, DType t, DType tx, const void* grad_log_prob, const void* x, const void* mean,
            const void* logvar, void* grad_mean, void* grad_logvar, int64_t N, int64_t Nx, int64_t D)

// log_prob[n] = -sum_d (log 2 + s + |x - loc| exp(-s)), s = logscale, x = x[n % Nx, d] (laplace.h).
AEVB_KERNEL(void, laplace_forward, DType t, DType tx, const void* x, const void* loc, const void* logscale,
            void* log_prob, int64_t N, int64_t Nx, int64_t D)

// grad_loc[n, d] = g[n] sign(x - loc) exp(-s),  grad_logscale[n, d] = g[n] (|x - loc| exp(-s) - 1).
AEVB_KERNEL(void, laplace_backward, DType t, DType tx, const void* grad_log_prob, const void* x, const void* loc,
            const void* logscale, void* grad_loc, void* grad_logscale, int64_t N, int64_t Nx, int64_t D)

// The discretized logistic mixture of K components per grey level (Salimans et al. 2017;
// discretized_logistic_mixture.h): values [N, D, K], x [Nx, D] in [0, 1] (v / 255),
// log_prob[n] = sum_d logsumexp_k(logit_k + log P_k(x)) - logsumexp_k(logit_k).
AEVB_KERNEL(void, discretized_logistic_mixture_forward, DType t, DType tx, const void* x, const void* logit_probs,
            const void* means, const void* log_scales, void* log_prob, int64_t N, int64_t Nx, int64_t D, int64_t K)

// grad_logit_probs = g (r - w), grad_means = g r d log P / d mean, grad_log_scales = g r d log P / d s, with r
// the components' responsibilities and w their weights.
AEVB_KERNEL(void, discretized_logistic_mixture_backward, DType t, DType tx, const void* grad_log_prob, const void* x,
            const void* logit_probs, const void* means, const void* log_scales, void* grad_logit_probs,
            void* grad_means, void* grad_log_scales, int64_t N, int64_t Nx, int64_t D, int64_t K)
