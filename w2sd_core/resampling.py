"""Re-Sampling as a special case of W2SD (Bai et al., arXiv 2502.00473, Appendix E.3, Alg. 2 and 3).

Vanilla Re-Sampling (Lugmayr et al. 2022) re-noises the strong step's result back to sigma_i with fresh
Gaussian noise; its weak model is "add random noise". The aligned variant keeps only noise whose cosine
with the W2SD direction `x~ - x` is positive, which the paper reports works better (Table 14).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .diagnostics import direction_cosine
from .steps import Sigma, append_dims

MAX_DRAWS = 16


def renoise(x_next: Tensor, sigma: Sigma, sigma_next: Sigma, noise: Tensor) -> Tensor:
    """`Add_Noise` back from sigma_next to sigma: `x_re = x_{i+1} + sqrt(sigma_i^2 - sigma_{i+1}^2) * eps`."""
    return x_next + (sigma**2 - sigma_next**2) ** 0.5 * noise


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
