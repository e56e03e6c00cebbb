"""aevb_fast::continuous_bernoulli_log_prob: per-row continuous Bernoulli log-likelihood from logits
(Loaiza-Ganem & Cunningham 2019), log p(x|z) = sum_d x a - softplus(a) + log C(a) with the
normalizer C(a) = a / tanh(a / 2): the Bernoulli's terms made a density on [0, 1], for grey-level
data. Its backward, aevb_fast::continuous_bernoulli_log_prob_backward, recomputes
d/da = g (x - sigmoid(a) + 1/a - 1/sinh(a)) from the saved logits and targets.

Shapes, dtypes, the targets' range check and why the backward recomputes: as bernoulli.py's; the
kernels are the Bernoulli's with the normalizer added (csrc/common/continuous_bernoulli.h).
"""

from ._likelihood_op import LikelihoodOp, define_likelihood
from .bernoulli import _target_grad  # d/dx = a: the normalizer does not depend on x


def _check_targets(outside) -> None:
    if outside:  # counted by the CPU kernel only
        raise ValueError("x holds values outside [0, 1] or NaN; continuous Bernoulli targets must lie in [0, 1]")


_ops = define_likelihood(LikelihoodOp("continuous_bernoulli", ("logits", "x"), _target_grad, _check_targets))
continuous_bernoulli_log_prob, continuous_bernoulli_log_prob_backward = _ops.log_prob, _ops.log_prob_backward
linear_continuous_bernoulli_log_prob = _ops.linear_log_prob
linear_continuous_bernoulli_log_prob_backward = _ops.linear_log_prob_backward
