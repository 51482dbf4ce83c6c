"""Re-Sampling as a special case of W2SD (Bai et al., arXiv 2502.00473, Appendix E.3, Alg. 2 and 3).

Vanilla Re-Sampling (Lugmayr et al. 2022) re-noises the strong step's result back to sigma_i with fresh
Gaussian noise; its weak model is "add random noise". The aligned variant keeps only noise whose cosine
with the W2SD direction `x~ - x` is positive, which the paper reports works better (Table 14).
The paper writes the re-noising for a variance-exploding latent `x0 + sigma * eps`; `Noising` says how the
model's own latent mixes data and noise, so flow models are re-noised to their own signal level.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .diagnostics import direction_cosine
from .steps import Sigma, append_dims

MAX_DRAWS = 16


@dataclass(frozen=True)
class Noising:
    """The forward noising of the sampler's latent: `x_sigma = signal(sigma) * x0 + noise(sigma) * eps`."""

    signal: Callable[[Sigma], Sigma]
    noise: Callable[[Sigma], Sigma]


def _one(sigma: Sigma) -> float:
    return 1.0


def _same(sigma: Sigma) -> Sigma:
    return sigma


def _one_minus(sigma: Sigma) -> Sigma:
    return 1 - sigma


VARIANCE_EXPLODING = Noising(signal=_one, noise=_same)
"""`x0 + sigma * eps`: k-diffusion's space, where ComfyUI samples EPS, V-prediction, EDM and Cosmos models."""
FLOW = Noising(signal=_one_minus, noise=_same)
"""`(1 - sigma) * x0 + sigma * eps`: rectified flow (ComfyUI's CONST: SD3, Flux, Wan, ...)."""


def _ratio(a: Sigma, a_next: Sigma) -> Sigma:
    """`a / a_next`, and 0 where `a_next` is 0 (then `a` is 0 too); no host sync for tensors."""
    if isinstance(a_next, Tensor):
        return a / a_next.clamp(min=torch.finfo(a_next.dtype).tiny)
    return a / a_next if a_next > 0 else 0 * a


def renoise(
    x_next: Tensor, sigma: Sigma, sigma_next: Sigma, noise: Tensor, noising: Noising = VARIANCE_EXPLODING
) -> Tensor:
    """`Add_Noise` back from sigma_next to sigma with fresh `noise`, to the statistics of `noising` at sigma.

    With `x_sigma = a(sigma) x0 + b(sigma) eps`: `x_re = k x_{i+1} + sqrt(b_i^2 - (k b_{i+1})^2) * eps`,
    `k = a_i / a_{i+1}`; variance-exploding (a = 1, b = sigma) gives the paper's
    `x_{i+1} + sqrt(sigma_i^2 - sigma_{i+1}^2) * eps`. A flow latent re-noised to sigma 1 is pure noise.
    """
    k = _ratio(noising.signal(sigma), noising.signal(sigma_next))
    variance = noising.noise(sigma) ** 2 - (k * noising.noise(sigma_next)) ** 2
    # Rounding can take a zero variance (sigma == sigma_next) just below 0.
    variance = variance.clamp(min=0) if isinstance(variance, Tensor) else max(variance, 0.0)
    return k * x_next + variance**0.5 * noise


def draw_noise(like: Tensor, generator: torch.Generator) -> Tensor:
    """Standard normal noise from a CPU generator, moved to `like`'s device and dtype (same on any device)."""
    noise = torch.randn(like.shape, generator=generator, device="cpu", dtype=torch.float32)
    if like.device.type == "cuda":
        # A copy from pageable memory waits for the GPU queue; from pinned memory it does not.
        noise = noise.pin_memory().to(like.device, non_blocking=True)
    return noise.to(device=like.device, dtype=like.dtype)


def aligned_noise(direction: Tensor, generator: torch.Generator, max_draws: int = MAX_DRAWS) -> Tensor:
    """Noise whose cosine with `direction` is positive, per batch element (paper Alg. 3).

    Redraws up to `max_draws` times and keeps each element's first positive draw. The accept test runs on
    the device without a host sync, so all `max_draws` candidates are always drawn (deterministic
    generator use). An element with no positive draw gets its first draw negated: for symmetric Gaussian
    noise that has the same distribution as the accepted draws.
    """
    if max_draws < 1:
        raise ValueError(f"resample max_draws={max_draws} must be 1 or more")
    first = draw_noise(direction, generator)
    chosen = first
    accepted = direction_cosine(first, direction) > 0
    for _ in range(max_draws - 1):
        candidate = draw_noise(direction, generator)
        take = (direction_cosine(candidate, direction) > 0) & ~accepted
        chosen = torch.where(append_dims(take, direction.ndim), candidate, chosen)
        accepted = accepted | take
    flip = ~accepted & (direction_cosine(first, direction) < 0)
    return torch.where(append_dims(flip, direction.ndim), -first, chosen)
