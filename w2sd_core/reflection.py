"""The W2SD reflection `M_inv^w(M^s(x))` (Bai, Sugiyama, Xie, arXiv 2502.00473, Alg. 1 and Theorem 1).

A strong Euler/DDIM step down from `sigma` to `sigma_next`, then the weak model's inversion back up.
By Theorem 1, `x~ - x ~= sigma * (sigma - sigma_next) * (grad log p_s - grad log p_w)`: the latent moves
along the weak-to-strong score difference, a stand-in for the unreachable strong-to-ideal difference.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .steps import Denoiser, Sigma, batch_sigma, check_reflection_sigmas, denoise_step, to_d

INVERSIONS = ("explicit", "reference", "warm_start")


def check_inversion(inversion: str, inversion_iters: int) -> None:
    """Raises ValueError for an unknown inversion kind or a negative number of refinements."""
    if inversion not in INVERSIONS:
        raise ValueError(f"inversion={inversion!r} is not one of {', '.join(INVERSIONS)}")
    if isinstance(inversion_iters, bool) or not isinstance(inversion_iters, int) or inversion_iters < 0:
        raise ValueError(f"inversion_iters={inversion_iters!r} must be a whole number, 0 or more")


@torch.no_grad()
def invert(
    x: Tensor,
    sigma: Sigma,
    sigma_next: Sigma,
    weak: Denoiser,
    inversion_iters: int = 0,
    inversion: str = "explicit",
    start: Tensor | None = None,
) -> Tensor:
    """`M_inv^w`: undoes one Euler step of `weak`, taking `x` at `sigma_next` back up to `sigma`.

    "explicit" is the paper's inversion (1 NFE). "reference" is the official code's EPS inversion: the
    weak model is queried at the target level `sigma` on the VP-rescaled latent. "warm_start" (1 NFE)
    starts the fixed-point iteration below from `start`, the latent the strong step started from (at
    `sigma`): the weak model is queried where the strong one was, so `x~ - x = h * (d_w - d_s)` there,
    Theorem 1's first-order form, whose error shrinks with the reflection's size rather than with the
    step's (the explicit inversion's grows with the step). Each of the `inversion_iters` fixed-point
    refinements (1 NFE each) moves the result towards the exact inverse.
    """
    h = sigma - sigma_next
    if inversion == "warm_start":
        if start is None:
            raise ValueError("inversion='warm_start' needs start, the latent before the strong step")
        x_tilde = x + h * to_d(start, sigma, weak(start, batch_sigma(sigma, x)))
    elif inversion == "reference":
        # Same VP latent x / sqrt(1 + sigma^2) as the network saw at sigma_next, labelled with sigma.
        x_in = x * ((1 + sigma**2) / (1 + sigma_next**2)) ** 0.5
        x_tilde = x + h * to_d(x_in, sigma, weak(x_in, batch_sigma(sigma, x)))
    else:
        # Euler step upward with the direction at the start point; exact only as h -> 0.
        x_tilde = x + h * to_d(x, sigma_next, weak(x, batch_sigma(sigma_next, x)))
    for _ in range(inversion_iters):
        # The exact inverse solves x~ = x + h * d_w(x~, sigma): the x~ whose weak Euler step lands on x.
        x_tilde = x + h * to_d(x_tilde, sigma, weak(x_tilde, batch_sigma(sigma, x)))
    return x_tilde


@torch.no_grad()
def reflect(
    x: Tensor,
    sigma: Sigma,
    sigma_next: Sigma,
    strong: Denoiser,
    weak: Denoiser,
    inversion_iters: int = 0,
    inversion: str = "explicit",
) -> Tensor:
    """One W2SD reflection `x~ = M_inv^w(M^s(x))` between `sigma` and `sigma_next` (paper Alg. 1).

    Costs 2 + `inversion_iters` model evaluations. Python-number sigmas are checked here
    (`sigma >= sigma_next > 0`); tensor sigmas are trusted, so callers check the schedule once up front
    instead of syncing with the device every step.
    """
    check_inversion(inversion, inversion_iters)
    if not isinstance(sigma, Tensor) and not isinstance(sigma_next, Tensor):
        check_reflection_sigmas(sigma, sigma_next)
    x_down = denoise_step(x, sigma, sigma_next, strong)
    return invert(x_down, sigma, sigma_next, weak, inversion_iters, inversion, start=x)
