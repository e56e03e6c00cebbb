"""Triton kernels of the per-row continuous Bernoulli log-likelihood from logits a (Loaiza-Ganem &
Cunningham 2019) and of its backward: bernoulli.py's kernels with CONTINUOUS set.

    log p(x|z) = sum_d x a - softplus(a) + log C(a),  C(a) = a / tanh(a / 2)  (C(0) = 2)
               = sum_d s a + R(u),  u = |a|,  R(u) = log(u / (1 - exp(-u)))  (s as the Bernoulli's)
    d/da = g (x - sigmoid(a) + 1/a - 1/sinh(a)) = g (x - [a >= 0] + sign(a) R'(u))

below u = 1 through the series of R and R' (csrc/common/continuous_bernoulli.h has the derivation).
Shapes and dtypes as bernoulli.py's; x in [0, 1], not checked here.
"""

import torch

from . import bernoulli
from .bernoulli import bernoulli_backward_kernel as continuous_bernoulli_backward_kernel  # noqa: F401
from .bernoulli import bernoulli_forward_kernel as continuous_bernoulli_forward_kernel  # noqa: F401


def forward(logits: torch.Tensor, x: torch.Tensor, row_dtype: torch.dtype) -> torch.Tensor:
    """log_prob [N] for contiguous logits and x."""
    return bernoulli.forward(logits, x, row_dtype, continuous=True)


def backward(grad: torch.Tensor, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """grad_logits [N, D] for the contiguous row gradients grad [N], logits and x."""
    return bernoulli.backward(grad, logits, x, continuous=True)
