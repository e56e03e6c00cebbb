"""aevb_fast::laplace_log_prob: per-row Laplace log-likelihood, s = logscale,
log p(x|loc, s) = -sum_d (log 2 + s + |x - loc| exp(-s)), for data with heavier tails than the
Gaussian's (a decoder's L1 loss, made a likelihood). Its backward, aevb_fast::laplace_log_prob_backward,
recomputes d/dloc = g sign(x - loc) exp(-s) and d/ds = g (|x - loc| exp(-s) - 1) from the saved
inputs (csrc/common/laplace.h); its fused head, aevb_fast::linear_laplace_log_prob, may put the
location through a sigmoid (data in [0, 1]).

Shapes: loc, logscale [N, D] of one dtype; x [Nx, D] with N a multiple of Nx (row n reads
x[n % Nx]); log_prob and g [N] float32 (float64 for float64 values); grad_loc, grad_logscale [N, D]
in the values' dtype.
"""

from ._likelihood_op import LikelihoodOp, define_likelihood
from ._targets import fold_rows

# log p is a function of x - loc: d/dx = -d/dloc.
_ops = define_likelihood(
    LikelihoodOp(
        "laplace", ("x", "loc", "logscale"), lambda grad, values, grads, x: fold_rows(-grads[0], x), sigmoid_head=True
    )
)
laplace_log_prob, laplace_log_prob_backward = _ops.log_prob, _ops.log_prob_backward
linear_laplace_log_prob, linear_laplace_log_prob_backward = _ops.linear_log_prob, _ops.linear_log_prob_backward
