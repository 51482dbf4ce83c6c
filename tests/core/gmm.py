"""Gaussian mixtures with closed-form denoisers: models whose exact answer is known.

A mixture of isotropic Gaussians `sum_k w_k N(mu_k, s^2 I)` noised to level sigma is again a mixture,
`sum_k w_k N(mu_k, (s^2 + sigma^2) I)`, so its posterior mean `E[x0 | x]` (the ideal denoiser) is
exact. "Training on fewer minority samples" (paper Sec. 3.2) is a mixture with a smaller minority weight.
Shared by tests/core and benchmarks/core_synthetic.py.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


class GMM:
    """`sum_k weights[k] * N(means[k], std^2 I)` in D dimensions, with its exact denoiser and score.

    A latent with more than D values is read as independent groups of D consecutive values (a
    factorized distribution): a 1-D mixture denoises image- and video-shaped latents element by element.
    """

    def __init__(
        self, means: Sequence[Sequence[float]] | Sequence[float], weights: Sequence[float], std: float
    ):
        m = torch.tensor(means, dtype=torch.float64)
        self.means = m[:, None] if m.ndim == 1 else m
        w = torch.tensor(weights, dtype=torch.float64)
        self.log_weights = (w / w.sum()).log()
        self.std = std
        self.evals = 0

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def denoise(self, x: Tensor, sigma: Tensor, **extra_args: object) -> Tensor:
        """The posterior mean `E[x0 | x_sigma = x]`, computed in float64 and returned in x's dtype.

        Extra arguments (a sampler's `extra_args`, e.g. "seed") are accepted and ignored, as a model would.
        """
        self.evals += 1
        batch = x.shape[0]
        sigma = torch.as_tensor(sigma, dtype=torch.float64, device=x.device).expand(batch)
        points = x.to(torch.float64).reshape(batch, -1)
        if points.shape[1] % self.dim:
            raise ValueError(f"a {self.dim}-D mixture cannot denoise {tuple(x.shape)}")
        # Consecutive groups of D values are independent points (a factorized distribution).
        per_row = points.shape[1] // self.dim
        sigma = sigma.repeat_interleave(per_row)
        points = points.reshape(-1, self.dim)
        means = self.means.to(x.device)
        var = (self.std**2 + sigma**2)[:, None, None]
        diff = points[:, None, :] - means[None]
        log_r = self.log_weights.to(x.device) - 0.5 * (diff**2 / var).sum(-1)
        r = log_r.softmax(dim=1)
        # Per component: mu_k + s^2 / (s^2 + sigma^2) * (x - mu_k).
        posterior = means[None] + (self.std**2 / var) * diff
        x0 = (r[..., None] * posterior).sum(1)
        return x0.reshape(x.shape).to(x.dtype)

    __call__ = denoise

    def score(self, x: Tensor, sigma: float) -> Tensor:
        """`grad log p_sigma(x) = (D(x, sigma) - x) / sigma^2` (Tweedie)."""
        s = torch.full((x.shape[0],), sigma, dtype=torch.float64)
        return (self.denoise(x, s) - x) / sigma**2

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """n exact samples, shape [n, D]."""
        k = torch.multinomial(self.log_weights.exp(), n, replacement=True, generator=generator)
        noise = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return self.means[k] + self.std * noise


def karras_sigmas(n: int, sigma_min: float = 0.002, sigma_max: float = 20.0, rho: float = 7.0) -> Tensor:
    """Karras et al. (2022) schedule: n steps, n + 1 sigmas ending at 0 (float64)."""
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (hi + ramp * (lo - hi)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros([1])])


# The paper's 1-D setting (Sec. 3.2, Fig. 4) as measured in docs/ALGORITHM.md: modes at -4 and +4, std 0.5.
ONE_D_MEANS = [-4.0, 4.0]
ONE_D_STD = 0.5


def one_d(left: float) -> GMM:
    """The 1-D two-mode mixture with weight `left` on the mode at -4."""
    return GMM(ONE_D_MEANS, [left, 1.0 - left], ONE_D_STD)


def left_fraction(x: Tensor) -> float:
    """Share of samples in the left (minority) mode."""
    return (x.reshape(-1) < 0).double().mean().item()


# The paper's 2-D setting (Sec. 3.2, Fig. 5): four modes at (+-3, +-3), std 0.5; the minority corner first.
CORNERS = [[-3.0, -3.0], [3.0, 3.0], [-3.0, 3.0], [3.0, -3.0]]


def two_d(weights: Sequence[float]) -> GMM:
    """The 2-D four-corner mixture with `weights` (bottom-left corner first)."""
    return GMM(CORNERS, weights, 0.5)


def corner_fraction(x: Tensor) -> float:
    """Share of samples in the bottom-left (minority) corner."""
    return ((x[:, 0] < 0) & (x[:, 1] < 0)).double().mean().item()
