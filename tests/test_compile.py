"""torch.compile(fullgraph=True) over the public API with every kernel backend on every device:
no graph break, the same values and gradients as eager, and fresh noise on every call of a
compiled function."""

import pytest
import torch
from helpers import KERNEL_BACKENDS

import aevb_fast

pytestmark = pytest.mark.parametrize("device, backend", KERNEL_BACKENDS, ids=[f"{d}-{b}" for d, b in KERNEL_BACKENDS])


class TinyVAE(torch.nn.Module):
    """The paper's shape in miniature: tanh MLP encoder to (mu, logvar), tanh MLP Bernoulli decoder."""

    def __init__(self, backend, data=12, hidden=8, latent=3):
        super().__init__()
        self.backend = backend
        torch.manual_seed(0)
        self.encoder = torch.nn.Sequential(
            torch.nn.Linear(data, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 2 * latent)
        )
        self.decoder = torch.nn.Sequential(
            torch.nn.Linear(latent, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, data)
        )

    def forward(self, x, seed=None):
        mu, logvar = self.encoder(x).chunk(2, dim=-1)
        z = aevb_fast.reparameterize(mu, logvar, seed=seed, backend=self.backend)
        return aevb_fast.vae_loss(self.decoder(z), x, mu, logvar, backend=self.backend)


def _step(model, x, seed):
    model.zero_grad()
    loss = model(x, seed)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


def test_training_step_compiles_with_inductor(device, backend):
    model, x = TinyVAE(backend).to(device), torch.rand(10, 12, device=device)
    eager_loss, eager_grads = _step(model, x, 5)
    compiled = torch.compile(model, fullgraph=True)
    loss, grads = _step(compiled, x, 5)
    torch.testing.assert_close(loss, eager_loss)
    for g, e in zip(grads, eager_grads):
        torch.testing.assert_close(g, e)
    # Without a seed, each call of the compiled step draws new noise.
    assert not torch.equal(compiled(x), compiled(x))


@pytest.mark.parametrize("estimator, iwae", [("analytic", False), ("mc", True)])
def test_elbo_loss_and_likelihoods_trace_without_graph_breaks(device, backend, estimator, iwae):
    decoder = torch.nn.Linear(3, 6).to(device)
    x = torch.rand(4, 6, device=device)
    mu, logvar = (
        torch.randn(4, 3, device=device, requires_grad=True),
        torch.randn(4, 3, device=device, requires_grad=True),
    )

    def objective(x, mu, logvar):
        bound = aevb_fast.elbo_loss(
            decoder, x, mu, logvar, n_samples=3, estimator=estimator, iwae=iwae, seed=2, backend=backend
        )
        gaussian = aevb_fast.gaussian_log_prob(
            x, torch.sigmoid(decoder(mu)), logvar.mean(-1, keepdim=True), "sum", backend=backend
        )
        return bound - gaussian + aevb_fast.gaussian_kl(mu, logvar, "sum", backend=backend)

    expected = objective(x, mu, logvar)
    expected_grads = torch.autograd.grad(expected, (mu, logvar))
    compiled = torch.compile(objective, fullgraph=True, backend="aot_eager")
    value = compiled(x, mu, logvar)
    torch.testing.assert_close(value, expected)
    for g, e in zip(torch.autograd.grad(value, (mu, logvar)), expected_grads):
        torch.testing.assert_close(g, e)
