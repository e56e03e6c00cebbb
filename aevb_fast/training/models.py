"""The paper's models (Kingma & Welling 2013, Appendix C; docs/paper.md): a Gaussian MLP
encoder and a Bernoulli (MNIST) or Gaussian (Frey Face) MLP decoder, one tanh hidden layer each,
weights and biases drawn from N(0, 0.01^2).

    model = VAE(data_dim=784, hidden_dim=500, latent_dim=20)
    loss = model(x)                     # the negative bound per datapoint, averaged over the batch
    loss.backward()

Shapes: x [B, data_dim] (or [B, 1, 28, 28]; values in [0, 1], float, uint8 or bool for the Bernoulli
decoder); z [..., latent_dim].
"""

import torch
from torch import nn

from .. import LIKELIHOODS, REDUCTIONS, chunk_rows_for, elbo_loss, iwae_bound, reference, reparameterize_kl
from ._checks import check_bound_options, check_choice, check_count


def _init_normal(module: nn.Module, std: float) -> None:
    for parameter in module.parameters():
        nn.init.normal_(parameter, 0.0, std)


class GaussianMLPEncoder(nn.Module):
    """q(z|x) = N(mu, diag exp(logvar)) with h = tanh(W3 x + b3), mu = W4 h + b4,
    logvar = W5 h + b5 (Appendix C.2). forward(x [B, data_dim]) -> (mu, logvar) [B, latent_dim]."""

    def __init__(self, data_dim: int, hidden_dim: int, latent_dim: int):
        super().__init__()
        self.hidden = nn.Linear(data_dim, hidden_dim)
        self.mu = nn.Linear(hidden_dim, latent_dim)
        self.logvar = nn.Linear(hidden_dim, latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.tanh(self.hidden(x))
        return self.mu(h), self.logvar(h)


class MLPDecoder(nn.Module):
    """p(x|z) with h = tanh(W1 z + b1) and one output layer per decoder output of the likelihood
    (Appendix C): the Bernoulli decoder's logits = W2 h + b2 (C.1; the sigmoid lives inside the fused
    likelihood, in stable form), the Gaussian decoder's mean = sigmoid(W4 h + b4) and logvar =
    W5 h + b5 (C.2, Frey Face). forward(z [..., latent_dim]) -> the decoder output [..., data_dim]:
    one tensor, or a tuple in the order of the likelihood's params. The output layers are named after
    those params (decoder.logits, decoder.mean, decoder.logvar)."""

    def __init__(self, latent_dim: int, hidden_dim: int, data_dim: int, likelihood: str):
        super().__init__()
        self.likelihood = LIKELIHOODS[likelihood]
        self.hidden = nn.Linear(latent_dim, hidden_dim)
        for name in self.likelihood.params:
            self.add_module(name, nn.Linear(hidden_dim, self.likelihood.output_width(data_dim)))

    @property
    def outputs(self) -> list[nn.Linear]:
        return [getattr(self, name) for name in self.likelihood.params]

    def forward(self, z: torch.Tensor):
        values = self._values(z)
        return values[0] if len(values) == 1 else values

    def expectation(self, z: torch.Tensor) -> torch.Tensor:
        """E[x|z] [..., data_dim]: the images a figure shows (the Bernoulli's sigmoid of the logits,
        the Gaussian's mean)."""
        return self.likelihood.mean(self._values(z))

    def _values(self, z: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.likelihood.decoder_values(self.outputs, torch.tanh(self.hidden(z)))


class VAE(nn.Module):
    """The paper's auto-encoder: GaussianMLPEncoder and an MLPDecoder of the same width for a
    likelihood of aevb_fast.LIKELIHOODS, trained on the SGVB bound (eq. 7, estimator B, by default)."""

    def __init__(
        self,
        data_dim: int = 784,
        hidden_dim: int = 500,
        latent_dim: int = 20,
        likelihood: str = "bernoulli",
        init_std: float = 0.01,
    ):
        super().__init__()
        check_choice("likelihood", likelihood, LIKELIHOODS)
        for name, value in (("data_dim", data_dim), ("hidden_dim", hidden_dim), ("latent_dim", latent_dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.likelihood = likelihood
        self.encoder = GaussianMLPEncoder(data_dim, hidden_dim, latent_dim)
        self.decoder = MLPDecoder(latent_dim, hidden_dim, data_dim, likelihood)
        _init_normal(self, init_std)

    def forward(
        self,
        x: torch.Tensor,
        *,
        n_samples: int = 1,
        estimator: str = "analytic",
        iwae: bool = False,
        gradient: str = "standard",
        beta: float = 1.0,
        free_bits: float = 0.0,
        reduction: str = "mean",
        backend: str | None = None,
        fused_head: bool | None = None,
        batch_rows: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        """The negative bound of x [B, ...] per datapoint, reduced over the batch ("mean" by default);
        see aevb_fast.elbo_loss for the estimators, gradient estimators, beta and free bits.
        batch_rows=(first, total): x is rows first.. of a global batch of total rows (a data-parallel
        rank's slice), drawing that slice's noise.

        fused_head=True runs the decoder's output layer and likelihood as one op chunked over rows
        (aevb_fast.linear_bernoulli_log_prob / linear_gaussian_log_prob) on the same parameters, so
        the [L, B, data_dim] decoder output never exists in full; None (the default) fuses where
        that saves memory: where the decoder output would be cut into more than one chunk."""
        check_count("n_samples", n_samples)
        data = x.flatten(1)
        mu, logvar = self.encoder(data.to(self.encoder.hidden.weight.dtype))
        if fused_head is None:
            rows, hidden = n_samples * data.shape[0], self.decoder.hidden.out_features
            outputs = data.shape[1] * len(self.decoder.outputs)
            fused_head = chunk_rows_for(rows, hidden, outputs) < rows
        if not fused_head:
            return elbo_loss(
                self.decoder,
                data,
                mu,
                logvar,
                n_samples=n_samples,
                estimator=estimator,
                iwae=iwae,
                gradient=gradient,
                beta=beta,
                free_bits=free_bits,
                likelihood=self.likelihood,
                reduction=reduction,
                backend=backend,
                batch_rows=batch_rows,
            )
        check_choice("reduction", reduction, REDUCTIONS)
        check_bound_options(estimator, iwae, gradient, beta, free_bits)
        z, kl = reparameterize_kl(
            mu,
            logvar,
            n_samples,
            estimator=estimator,
            gradient="standard" if gradient == "standard" else "stl",
            backend=backend,
            batch_rows=batch_rows,
        )
        if free_bits:
            kl = reference.free_bits_kl(mu, logvar, free_bits).to(kl.dtype).expand(kl.shape)
        h = torch.tanh(self.decoder.hidden(z))
        # A sum over the batch needs only the sum of log p(x|z) over every row, whose gradients the
        # fused op makes in its forward pass; IWAE and per-datapoint values need each row's.
        per_row = iwae or reduction == "none"
        log_px = self._log_likelihood(h, data, "none" if per_row else "sum", backend)
        if per_row:
            bound = iwae_bound(log_px, kl, z, gradient=gradient) if iwae else reference.elbo(log_px, kl, beta)
            return reference.reduce(-bound, reduction)
        # sum_b elbo_b: (1/L) sum log p(x|z) - beta sum_b KL_b (analytic), (1/L) sum (log p(x|z) - beta kl) (mc)
        kl_sum = beta * kl.sum()
        bound = (log_px - kl_sum) / n_samples if estimator == "mc" else log_px / n_samples - kl_sum
        return -bound / data.shape[0] if reduction == "mean" else -bound

    def _log_likelihood(self, h: torch.Tensor, x: torch.Tensor, reduction: str, backend: str | None) -> torch.Tensor:
        """The decoder's output layers and likelihood, fused, on h [L, B, hidden_dim]."""
        layers = [(layer.weight, layer.bias) for layer in self.decoder.outputs]
        return self.decoder.likelihood.head(h, layers, x, reduction, backend)
