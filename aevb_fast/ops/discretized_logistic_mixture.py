"""aevb_fast::discretized_logistic_mixture_log_prob: per-row log-likelihood of 8-bit grey levels
under a mixture of K discretized logistics per element (Salimans et al. 2017, PixelCNN++, in
[0, 1]), log p(x|z) = sum_d logsumexp_k(logit_k + log P_k(x_d)) - logsumexp_k(logit_k), P_k the
mass of x's bin of width 1/255 (csrc/common/discretized_logistic_mixture.h). Its backward,
aevb_fast::discretized_logistic_mixture_log_prob_backward, recomputes the gradients of the logits,
means and log scales from the inputs, so the [N, D, K] intermediates of the plain version (the
components' log masses, their log-softmax and the responsibilities) never exist.

Shapes: x [Nx, D] floating (v / 255), N a multiple of Nx (row n reads x[n % Nx]); logit_probs,
means and log_scales [N, D, K] of one floating dtype; log_prob and g [N] float32 (float64 for
float64 values); the gradients [N, D, K] in the values' dtype. x takes no gradient: the data are
discrete.
"""

from ._likelihood_op import LikelihoodOp, define_likelihood


def _target_grad(grad, values, grads, x):
    raise ValueError("the discretized logistic mixture gives no gradient for x: its data are discrete grey levels")


_ops = define_likelihood(
    LikelihoodOp(
        "discretized_logistic_mixture",
        ("x", "logit_probs", "means", "log_scales"),
        _target_grad,
        components=True,
    )
)
discretized_logistic_mixture_log_prob = _ops.log_prob
discretized_logistic_mixture_log_prob_backward = _ops.log_prob_backward
