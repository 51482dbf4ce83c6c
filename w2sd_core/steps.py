"""k-diffusion step helpers: the Euler step is DDIM (eta=0) for EPS models and exact for flow models."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor

Sigma = float | Tensor
"""A noise level: a python float or a 0-d tensor (or, as in k-diffusion, a 1-D tensor of length batch)."""

Denoiser = Callable[[Tensor, Tensor], Tensor]
"""`denoise(x, sigma) -> x0_hat`, `sigma` a 1-D tensor of length batch (k-diffusion convention)."""


def append_dims(v: Tensor, target_dims: int) -> Tensor:
    """Appends dimensions to the end of a tensor until it has target_dims dimensions (k-diffusion)."""
    return v[(...,) + (None,) * (target_dims - v.ndim)]


def to_d(x: Tensor, sigma: Sigma, denoised: Tensor) -> Tensor:
    """Converts a denoiser output to a Karras ODE derivative `(x - D(x, sigma)) / sigma`."""
    if isinstance(sigma, Tensor) and sigma.ndim > 0:
        sigma = append_dims(sigma, x.ndim)
    return (x - denoised) / sigma


def euler_step(x: Tensor, sigma: Sigma, sigma_next: Sigma, denoised: Tensor) -> Tensor:
    """One Euler step `sigma -> sigma_next`, the same ops in the same order as k-diffusion's sample_euler."""
    d = to_d(x, sigma, denoised)
    dt = sigma_next - sigma
    return x + d * dt


def batch_sigma(sigma: Sigma, x: Tensor) -> Tensor:
    """`sigma * s_in`: the noise level as a 1-D tensor of length batch, as k-diffusion samplers pass it."""
    s_in = x.new_ones([x.shape[0]])
    return sigma * s_in


def denoise_step(x: Tensor, sigma: Sigma, sigma_next: Sigma, denoiser: Denoiser) -> Tensor:
    """`M(x)`: one Euler/DDIM step of `denoiser` from `sigma` down to `sigma_next`."""
    return euler_step(x, sigma, sigma_next, denoiser(x, batch_sigma(sigma, x)))


def first_order_step(
    model: Callable[..., Tensor], x: Tensor, sigmas: Tensor, extra_args: dict[str, Any] | None = None
) -> Tensor:
    """One Euler step over a one-step schedule `sigmas` (2 values) with `model(x, sigma, **extra_args)`.

    The first-order step of UniPC, DPM-Solver(++) and DDIM, written in sigma space: what a sampler that
    cannot take a lone step (ComfyUI's UniPC takes none on a one-step schedule) runs instead.
    """
    if len(sigmas) != 2:
        raise ValueError(f"first_order_step takes a one-step schedule (2 sigmas); got {len(sigmas)}")
    denoised = model(x, batch_sigma(sigmas[0], x), **(extra_args or {}))
    return euler_step(x, sigmas[0], sigmas[1], denoised)


def check_reflection_sigmas(sigma: float, sigma_next: float) -> None:
    """A reflection needs `sigma >= sigma_next > 0`: the weak inversion divides by `sigma_next`."""
    if not sigma_next > 0:
        raise ValueError(
            f"reflection sigma_next={sigma_next} must be above 0: the step into sigma 0 is never reflected "
            "(the inversion cannot start from a clean sample)"
        )
    if not sigma >= sigma_next:
        raise ValueError(f"reflection sigma={sigma} is below sigma_next={sigma_next}: sigmas must decrease")
