"""The eager path of aevb_fast.vae_loss: -(log p(x|z) - beta KL(q(z|x) || N(0, I))) per datapoint,
reduced, as one autograd node over the likelihood's kernels and the analytic KL's (estimator B,
eq. 7, for one sample).

Composed from the ops, the loss is two op nodes and four of torch's (scale, subtract, negate,
reduce), each with its own forward and backward call; at the paper's sizes the calls, not the
kernels, set the time. This node runs the same kernels and the same torch arithmetic in its forward,
and in its backward hands each kernel the row gradients autograd would have (-g for the likelihood,
g beta for the KL, g = the upstream gradient spread over the rows), so its values and gradients are
those of the composition. Under torch.compile, a dispatch mode or with tensor subclasses it is the
composition of the registered ops (it has no schema of its own to trace).

Shapes: values the likelihood's flattened decoder outputs ([N, D] logits, or mean and logvar), x
[Nx, D] (no gradient), mu and logvar [N, Z].
"""

import torch

from ._library import needs_grad, traced
from .reparameterize import kl_only_seed, reparameterize, reparameterize_backward


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    return loss if reduction == "none" else loss.sum() if reduction == "sum" else loss.mean()


def _parts(how, likelihood, values, x, mu, logvar, beta, backend):
    """The per-row loss and its two terms, as the composition computes them, calling the ops by `how`:
    "launch" (the kernels alone) or "prechecked" (the ops, traced or taking gradients as they may)."""
    seed = kl_only_seed(mu, logvar)
    log_px = likelihood.kernel(how, values, x, backend)
    kl = getattr(reparameterize, how)(mu, logvar, seed, 0, False, False, backend)[1]
    # beta kl - log p is -(log p - beta kl) exactly (negation and multiplying by 1 are exact).
    return torch.sub(kl if beta == 1 else beta * kl, log_px), log_px, kl, seed


class _VaeLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, likelihood, beta, reduction, backend, x, mu, logvar, *values):
        loss, log_px, kl, seed = _parts("launch", likelihood, values, x, mu, logvar, beta, backend)
        ctx.save_for_backward(x, mu, logvar, seed, *values)
        ctx.likelihood, ctx.beta, ctx.reduction, ctx.backend = likelihood, beta, reduction, backend
        ctx.row_dtypes = log_px.dtype, kl.dtype
        return _reduce(loss, reduction)

    @staticmethod
    def backward(ctx, grad):
        x, mu, logvar, seed, *values = ctx.saved_tensors
        n = mu.shape[0]
        rows = grad if ctx.reduction == "none" else (grad / n if ctx.reduction == "mean" else grad).expand(n)
        log_px_dtype, kl_dtype = ctx.row_dtypes
        grads = [None] * len(values)
        if any(ctx.needs_input_grad[7:]):
            grads = ctx.likelihood.kernel_backward((-rows).to(log_px_dtype).contiguous(), values, x, ctx.backend)
        grad_mu = grad_logvar = None
        if ctx.needs_input_grad[5] or ctx.needs_input_grad[6]:
            grad_kl = (rows.to(kl_dtype) * ctx.beta).contiguous()
            grad_mu, grad_logvar = reparameterize_backward.launch(
                None, grad_kl, mu, logvar, seed, 0, False, False, ctx.backend
            )
        return None, None, None, None, None, grad_mu, grad_logvar, *grads


def vae_loss(
    likelihood,
    values: tuple[torch.Tensor, ...],
    x: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    beta: float,
    reduction: str,
    backend: str,
) -> torch.Tensor:
    """The loss [N] or reduced, for arguments the functional layer has checked, on a kernel backend
    that serves their device; x takes no gradient. likelihood: its aevb_fast.likelihoods.Likelihood."""
    args = (x, mu, logvar, *values)
    if not traced(args) and needs_grad(args):
        return _VaeLoss.apply(likelihood, beta, reduction, backend, *args)
    return _reduce(_parts("prechecked", likelihood, values, x, mu, logvar, beta, backend)[0], reduction)
