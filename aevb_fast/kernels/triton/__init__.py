"""The Triton kernels: the GPU path, and CPU tensors under Triton's interpreter (TRITON_INTERPRET=1,
set before this package is first imported).

One module per op, each holding its kernel and a launcher that takes contiguous tensors and
returns the op's outputs:
  reparameterize  z = mu + exp(logvar / 2) * eps with the KL term, and its backward
  bernoulli       per-row Bernoulli log-likelihood, and its backward
  gaussian        per-row Gaussian log-likelihood, and its backward

load_error is None when the kernels loaded; interpreted says whether they run under the interpreter.
"""

try:
    from triton.runtime.interpreter import InterpretedFunction

    from . import bernoulli, gaussian, reparameterize

    load_error = None
    interpreted = isinstance(bernoulli.bernoulli_forward_kernel, InterpretedFunction)
except ImportError as error:  # triton is an optional dependency
    load_error = f"{type(error).__name__}: {error}"
    interpreted = False

__all__ = ["bernoulli", "gaussian", "interpreted", "load_error", "reparameterize"]
