"""aevb_fast::gaussian_log_prob: per-row Gaussian log-likelihood (docs/paper.md, Gaussian MLP decoder),
log N(x; m, exp(s)) = -1/2 sum_d (log 2pi + s + (x - m)^2 exp(-s)). Its backward,
aevb_fast::gaussian_log_prob_backward, recomputes d/dm = g (x - m) exp(-s) and
d/ds = g ((x - m)^2 exp(-s) - 1) / 2 from the saved inputs, g being each row's upstream gradient
(for the reason, see bernoulli.py).

Shapes: mean, logvar [N, D] of one dtype; x [Nx, D] with N a multiple of Nx (row n reads
x[n % Nx]); log_prob and g [N] float32 (float64 for float64 values); grad_mean, grad_logvar [N, D]
in the values' dtype.
"""

from ._likelihood_op import LikelihoodOp, define_likelihood
from ._targets import fold_rows

# log N is a function of x - m: d/dx = -d/dm.
_ops = define_likelihood(
    LikelihoodOp(
        "gaussian", ("x", "mean", "logvar"), lambda grad, values, grads, x: fold_rows(-grads[0], x), sigmoid_head=True
    )
)
gaussian_log_prob, gaussian_log_prob_backward = _ops.log_prob, _ops.log_prob_backward
linear_gaussian_log_prob, linear_gaussian_log_prob_backward = _ops.linear_log_prob, _ops.linear_log_prob_backward
