"""Plain PyTorch, straight from the paper (Kingma & Welling 2013; docs/paper.md): the oracle
every kernel is tested against, the baseline every benchmark runs, and the "torch" backend.

Conventions: a datapoint's latent vector is the last dimension of mu/logvar [..., Z]; samples are
a leading dimension L; a log-likelihood sums over the last dimension of its inputs [..., D].
Everything here is differentiable with ordinary autograd.
"""

import math

import torch
import torch.nn.functional as F

LOG_2PI = math.log(2 * math.pi)
LOG_2 = math.log(2)
REDUCTIONS = ("none", "sum", "mean")


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """z = mu + sigma * eps with sigma = exp(logvar / 2) (Section 2.4). eps is [..., Z] or [L, ..., Z]."""
    return mu + torch.exp(0.5 * logvar) * eps


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) per datapoint [...] (Appendix B):
    -KL = 1/2 sum_j (1 + logvar_j - mu_j^2 - exp(logvar_j))."""
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=-1)


def free_bits_kl(mu: torch.Tensor, logvar: torch.Tensor, free_bits: float) -> torch.Tensor:
    """The KL term with free bits (Kingma et al. 2016), a scalar: sum_j max(free_bits, KL_j), KL_j the
    analytic KL of latent unit j averaged over the datapoints [..., Z]. A unit whose KL is below
    free_bits nats costs free_bits and takes no gradient, so the encoder is not pushed to switch it off."""
    per_unit = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar)
    return torch.clamp(per_unit.reshape(-1, mu.shape[-1]).mean(0), min=free_bits).sum()


def log_ratio(z: torch.Tensor, eps: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log q(z|x) - log p(z) per sample [L, ...] (estimator A, eq. 6), with
    log p(z) = -1/2 sum(z^2 + log 2pi) and log q(z|x) = -1/2 sum(eps^2 + logvar + log 2pi)."""
    log_p = -0.5 * torch.sum(z.pow(2) + LOG_2PI, dim=-1)
    log_q = -0.5 * torch.sum(eps.pow(2) + logvar + LOG_2PI, dim=-1)
    return log_q - log_p


def _weighted_log(w: torch.Tensor, log_p: torch.Tensor) -> torch.Tensor:
    """w log p with 0 log 0 = 0. Only that product is replaced: w = 0 beside a finite log p keeps
    its gradient log p, and log p = -inf beside w > 0 stays -inf."""
    return w * torch.where((w == 0) & (log_p == -math.inf), 0, log_p)


def bernoulli_log_prob(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log p(x|z) = sum_i x_i log y_i + (1 - x_i) log(1 - y_i), y = sigmoid(logits), per row [...];
    log y and log(1 - y) as logsigmoid(a) and logsigmoid(-a), never log(sigmoid(a)). With the
    convention 0 log 0 = 0 an infinite logit gives the formula's limit: 0 where it makes the target
    certain (a = +inf with x = 1, a = -inf with x = 0), -inf where it makes it impossible (a = +inf
    with x < 1, a = -inf with x > 0)."""
    return torch.sum(_bernoulli_terms(logits, x.to(logits.dtype)), dim=-1)


def _bernoulli_terms(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return _weighted_log(x, F.logsigmoid(logits)) + _weighted_log(1 - x, F.logsigmoid(-logits))


def _series_below(logits: torch.Tensor) -> float:
    """Where the continuous Bernoulli's closed forms give way to their series near a = 0: their
    gradients cancel like eps / |a| there, which float64 bears down to 1e-3 (the series' fifth term
    is under 1e-24 below it) and float32 only to 0.5 (the fifth term under 3e-9)."""
    return 1e-3 if logits.dtype == torch.float64 else 0.5


def continuous_bernoulli_log_norm(logits: torch.Tensor) -> torch.Tensor:
    """log C(a) = log(a / tanh(a / 2)) elementwise, the continuous Bernoulli's normalizer for
    lambda = sigmoid(a) (C = 2 artanh(1 - 2 lambda) / (1 - 2 lambda)), as log|a| - log(1 - exp(-|a|))
    + log1p(exp(-|a|)) (expm1 and log1p exact near 0); near a = 0, where that form is 0/0, its
    series log 2 + a^2/12 - 7 a^4/1440 + 31 a^6/90720 - 127 a^8/4838400."""
    u = logits.abs()
    small = u < _series_below(logits)
    safe = torch.where(small, 1.0, u)  # the direct form's argument, NaN-free where it is not used
    direct = torch.log(safe) - torch.log(-torch.expm1(-safe)) + torch.log1p(torch.exp(-safe))
    w = u * u
    series = LOG_2 + w * (1 / 12 + w * (-7 / 1440 + w * (31 / 90720 - w * 127 / 4838400)))
    return torch.where(small, series, direct)


def continuous_bernoulli_log_prob(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log p(x|z) = sum_i x_i log y_i + (1 - x_i) log(1 - y_i) + log C(a_i), y = sigmoid(a), a the
    logits, per row [...]: the continuous Bernoulli (Loaiza-Ganem & Cunningham 2019), a density on
    [0, 1]. At an infinite logit the density is a point mass's: +inf at that point (x = 1 for
    a = +inf, x = 0 for a = -inf), -inf elsewhere (the Bernoulli term's -inf, not -inf + inf)."""
    x = x.to(logits.dtype)
    bernoulli = _bernoulli_terms(logits, x)
    terms = torch.where(bernoulli == -math.inf, bernoulli, bernoulli + continuous_bernoulli_log_norm(logits))
    return torch.sum(terms, dim=-1)


def continuous_bernoulli_mean(logits: torch.Tensor) -> torch.Tensor:
    """E[x] = 1 / (1 - exp(-a)) - 1 / a for logits a; near a = 0 its series
    1/2 + a/12 - a^3/720 + a^5/30240."""
    small = logits.abs() < _series_below(logits)
    safe = torch.where(small, 1.0, logits)
    w = logits * logits
    series = 0.5 + logits * (1 / 12 + w * (-1 / 720 + w / 30240))
    return torch.where(small, series, -1 / torch.expm1(-safe) - 1 / safe)


def discretized_logistic_mixture_log_prob(
    x: torch.Tensor, logit_probs: torch.Tensor, means: torch.Tensor, log_scales: torch.Tensor
) -> torch.Tensor:
    """log P(x) of 8-bit grey levels under a mixture of K discretized logistics per element (Salimans
    et al. 2017, PixelCNN++, in [0, 1] rather than [-1, 1]: the same probabilities, means and scales
    halved), per row [...]: x [..., D] holds v / 255 for v in 0..255; the mixture's logits, means and
    log scales are [..., D, K]. Each value owns the bin of width 1/255 around x, the first and last
    open to -inf and +inf:

        P_k(x) = sigmoid((x + 1/510 - mu) / s) - sigmoid((x - 1/510 - mu) / s),  s = exp(log_scale)

    with log sigmoid(.) for v = 0 and log(1 - sigmoid(.)) for v = 255; where the difference falls
    to 1e-5 or below (a bin far in a tail, where it would lose its digits in float32), the density
    at the bin's middle times the bin's width instead: log pdf(x) - log 255. Log scales below -7
    count as -7 (PixelCNN++'s floor). Then
    log P(x) = sum_d logsumexp_k (log softmax(logit_probs)_k + log P_k(x_d))."""
    x = x.to(means.dtype).unsqueeze(-1)
    log_scales = torch.clamp(log_scales, min=-7.0)  # as PixelCNN++: a tenth of a bin and below, one scale
    centered = x - means
    inv_s = torch.exp(-log_scales)
    plus_in = inv_s * (centered + 1 / 510)
    min_in = inv_s * (centered - 1 / 510)
    mid_in = inv_s * centered
    log_cdf_plus = F.logsigmoid(plus_in)  # v = 0: the bin (-inf, x + 1/510]
    log_one_minus_cdf_min = F.logsigmoid(-min_in)  # v = 255: [x - 1/510, inf)
    # The bin's mass sigmoid(plus) - sigmoid(minus) as sigmoid(plus) sigmoid(-minus) (1 - exp(-a/255)),
    # every factor exact, so that a bin narrow beside its component keeps its digits. (A width below
    # 1e-30 would give log 0; its mass is far below 1e-5, where the middle's density serves.)
    width = torch.clamp(inv_s / 255, min=1e-30)
    log_mass = F.logsigmoid(plus_in) + F.logsigmoid(-min_in) + torch.log(-torch.expm1(-width))
    log_pdf_mid = mid_in - log_scales - 2 * F.softplus(mid_in)
    inner = torch.where(log_mass > math.log(1e-5), log_mass, log_pdf_mid - math.log(255))
    edge = 0.5 / 255
    log_probs = torch.where(x < edge, log_cdf_plus, torch.where(x > 1 - edge, log_one_minus_cdf_min, inner))
    return torch.logsumexp(log_probs + F.log_softmax(logit_probs, dim=-1), dim=-1).sum(-1)


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(x; mean, exp(logvar) I) = -1/2 sum_i (log 2pi + logvar_i + r_i^2), per row [...], through the
    standardized residual r = (x - mean) / exp(logvar / 2): finite where (x - mean)^2 / exp(logvar)
    would be 0 * inf (x == mean, logvar past the exp range)."""
    x = x.to(mean.dtype)
    d = x - mean
    # Where d == 0, r = 0 whatever logvar: exp(0) there keeps the backward free of 0 * inf too.
    r = d * torch.exp(-0.5 * torch.where(d == 0, 0.0, logvar))
    return -0.5 * torch.sum(LOG_2PI + logvar + r.pow(2), dim=-1)


def laplace_log_prob(x: torch.Tensor, loc: torch.Tensor, logscale: torch.Tensor) -> torch.Tensor:
    """log Laplace(x; loc, exp(logscale)) = -sum_i (log 2 + s_i + |x_i - loc_i| exp(-s_i)), s = logscale,
    per row [...], the scaled residual made as (|x - loc| exp(-s/2)) exp(-s/2): finite where
    |x - loc| exp(-s) would be 0 * inf (x == loc, s past the exp range)."""
    x = x.to(loc.dtype)
    d = x - loc
    # Where d == 0 the residual is 0 whatever s: exp(0) there keeps the backward free of 0 * inf too.
    e = torch.exp(-0.5 * torch.where(d == 0, 0.0, logscale))
    return -torch.sum(LOG_2 + logscale + d.abs() * e * e, dim=-1)


def elbo(log_px: torch.Tensor, kl: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """The SGVB lower bound per datapoint [...] from L samples.

    log_px [L, ...] holds log p(x|z_l). kl is either [...], the analytic KL (estimator B, eq. 7):
        (1/L) sum_l log p(x|z_l) - beta KL,
    or [L, ...], log q(z_l|x) - log p(z_l) per sample (estimator A, eq. 6):
        (1/L) sum_l [log p(x|z_l) - beta (log q(z_l|x) - log p(z_l))].
    beta = 1 is the paper's bound.
    """
    if kl.dim() == log_px.dim():
        return torch.mean(log_px - beta * kl, dim=0)
    return torch.mean(log_px, dim=0) - beta * kl


def iwae_bound(log_px: torch.Tensor, log_ratio: torch.Tensor) -> torch.Tensor:
    """The importance-weighted bound per datapoint [...] from k = L samples (Burda et al. 2015):
    log (1/k) sum_l p(x, z_l) / q(z_l|x) = logsumexp_l (log p(x|z_l) - log_ratio_l) - log k.
    Both inputs are [L, ...]; k = 1 gives estimator A."""
    return torch.logsumexp(log_px - log_ratio, dim=0) - math.log(log_px.shape[0])


def reduce(values: torch.Tensor, reduction: str) -> torch.Tensor:
    """Per-datapoint values reduced over all datapoints: "none", "sum" or "mean"."""
    if reduction == "none":
        return values
    if reduction == "sum":
        return values.sum()
    if reduction == "mean":
        return values.mean()
    raise ValueError(f"reduction={reduction!r} is not supported; expected one of {', '.join(REDUCTIONS)}")
