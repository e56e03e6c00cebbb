"""The op surface: each fused op registered once with torch.library (define, per-device routing
by backend, register_fake, register_autograd), so autograd, torch.compile(fullgraph=True) and
torch.library.opcheck all work. The public API (aevb_fast.functional) picks the backend."""

from . import backends
from .bernoulli import bernoulli_log_prob
from .gaussian import gaussian_log_prob
from .reparameterize import reparameterize, reparameterize_backward
from .scale_rows import scale_rows

__all__ = [
    "backends",
    "bernoulli_log_prob",
    "gaussian_log_prob",
    "reparameterize",
    "reparameterize_backward",
    "scale_rows",
]
