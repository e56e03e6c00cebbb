"""The op surface: each fused op registered once with torch.library (define, per-device routing
by backend, register_fake, register_autograd), so autograd, torch.compile(fullgraph=True) and
torch.library.opcheck all work. Importing this package registers torch.ops.aevb_fast.*; the
public API (aevb_fast.functional) picks the backend."""

from . import backends, bernoulli, gaussian, reparameterize

__all__ = ["backends", "bernoulli", "gaussian", "reparameterize"]
