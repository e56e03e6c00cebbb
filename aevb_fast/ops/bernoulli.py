"""aevb_fast::bernoulli_log_prob: per-row Bernoulli log-likelihood from logits (docs/paper.md,
Bernoulli MLP decoder), log p(x|z) = sum_d x a - softplus(a). Its backward,
aevb_fast::bernoulli_log_prob_backward, recomputes d/da = g (x - sigmoid(a)) from the saved logits
and targets, g being each row's upstream gradient.

Shapes: logits [N, D]; x [Nx, D] with N a multiple of Nx (row n reads x[n % Nx], so L samples of
one batch share its targets), float, uint8 or bool with values in [0, 1]; log_prob and g [N] float32
(float64 for float64 logits); grad_logits [N, D] in the logits' dtype. The CPU kernel checks the
targets' range in the same pass and raises ValueError on a violation; the GPU kernels (Triton and
CUDA) do not (it would cost a device sync).

Why recompute rather than store the gradient in the forward pass: both move the same bytes for
float targets and recomputing moves fewer for uint8/bool ones, storing keeps a second [N, D] buffer
alive between the passes, and at [4096, 12288] float32 on the 2-core CI machine the CPU kernels'
forward + backward took about 100 ms recomputing against 137 ms storing (buffers already faulted
in).
"""

import torch

from ._likelihood_op import LikelihoodOp, define_likelihood
from ._targets import fold_rows


def _target_grad(grad, values, grads, x):
    # d/dx = a; where rows of x repeat, their products are summed in float64 (they may cancel)
    (logits,) = values
    dtype = grad.dtype if logits.shape[0] == x.shape[0] else torch.float64
    return fold_rows(logits.to(dtype) * grad.to(dtype)[:, None], x)


def _check_targets(outside) -> None:
    if outside:  # counted by the CPU kernel only
        raise ValueError("x holds values outside [0, 1] or NaN; Bernoulli targets must be probabilities in [0, 1]")


_ops = define_likelihood(LikelihoodOp("bernoulli", ("logits", "x"), _target_grad, _check_targets))
bernoulli_log_prob, bernoulli_log_prob_backward = _ops.log_prob, _ops.log_prob_backward
linear_bernoulli_log_prob, linear_bernoulli_log_prob_backward = _ops.linear_log_prob, _ops.linear_log_prob_backward
