"""Toy k-diffusion samplers with ComfyUI's signature, to wrap in tests (no ComfyUI import).

Euler and DPM++ 2M are k-diffusion's code; Euler ancestral draws its noise like ComfyUI's
`default_noise_sampler`: a generator on x's device seeded with `extra_args["seed"]`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor


def to_d(x: Tensor, sigma: Tensor, denoised: Tensor) -> Tensor:
    return (x - denoised) / sigma


def default_noise_sampler(x: Tensor, seed: int | None = None) -> Callable[[Tensor, Tensor], Tensor]:
    generator = None
    if seed is not None:
        generator = torch.Generator(device=x.device)
        generator.manual_seed(seed)
    return lambda sigma, sigma_next: torch.randn(
        x.size(), dtype=x.dtype, device=x.device, generator=generator
    )


@torch.no_grad()
def sample_euler(model, x, sigmas, extra_args=None, callback=None, disable=None):  # type: ignore[no-untyped-def]
    """Euler (Karras et al. 2022, Alg. 2 without churn), as k-diffusion / ComfyUI write it."""
    extra_args = {} if extra_args is None else extra_args
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        sigma_hat = sigmas[i]
        denoised = model(x, sigma_hat * s_in, **extra_args)
        d = to_d(x, sigma_hat, denoised)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigma_hat, "denoised": denoised})
        dt = sigmas[i + 1] - sigma_hat
        x = x + d * dt
    return x


def get_ancestral_step(sigma_from: Tensor, sigma_to: Tensor, eta: float = 1.0) -> tuple[Any, Any]:
    sigma_up = min(sigma_to, eta * (sigma_to**2 * (sigma_from**2 - sigma_to**2) / sigma_from**2) ** 0.5)
    sigma_down = (sigma_to**2 - sigma_up**2) ** 0.5
    return sigma_down, sigma_up


@torch.no_grad()
def sample_euler_ancestral(
    model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1.0, s_noise=1.0
):  # type: ignore[no-untyped-def]
    """Euler ancestral; noise from a generator seeded by extra_args["seed"] (ComfyUI's default)."""
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = default_noise_sampler(x, seed=extra_args.get("seed"))
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        sigma_down, sigma_up = get_ancestral_step(sigmas[i], sigmas[i + 1], eta=eta)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        if sigma_down == 0:
            x = denoised
        else:
            d = to_d(x, sigmas[i], denoised)
            x = (
                x
                + d * (sigma_down - sigmas[i])
                + noise_sampler(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
            )
    return x


@torch.no_grad()
def sample_dpmpp_2m(model, x, sigmas, extra_args=None, callback=None, disable=None):  # type: ignore[no-untyped-def]
    """DPM-Solver++(2M), a multistep solver: it keeps the previous denoised output."""
    extra_args = {} if extra_args is None else extra_args
    s_in = x.new_ones([x.shape[0]])

    def sigma_fn(t: Tensor) -> Tensor:
        return t.neg().exp()

    def t_fn(sigma: Tensor) -> Tensor:
        return sigma.log().neg()

    old_denoised = None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        t, t_next = t_fn(sigmas[i]), t_fn(sigmas[i + 1])
        h = t_next - t
        if old_denoised is None or sigmas[i + 1] == 0:
            x = (sigma_fn(t_next) / sigma_fn(t)) * x - (-h).expm1() * denoised
        else:
            h_last = t - t_fn(sigmas[i - 1])
            r = h_last / h
            denoised_d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
            x = (sigma_fn(t_next) / sigma_fn(t)) * x - (-h).expm1() * denoised_d
        old_denoised = denoised
    return x


@torch.no_grad()
def sample_no_lone_step(model, x, sigmas, extra_args=None, callback=None, disable=None):  # type: ignore[no-untyped-def]
    """DPM-Solver++(2M), except that a one-step schedule takes no step, as ComfyUI's UniPC does.

    UniPC picks `order = min(3, len(sigmas) - 2)`: order 0 on 2 sigmas evaluates the model once and
    returns its input rescaled by sqrt(1 + sigma_next^2) / sqrt(1 + sigma^2) (its VP-space round trip).
    """
    if len(sigmas) == 2:
        extra_args = {} if extra_args is None else extra_args
        model(x, sigmas[0] * x.new_ones([x.shape[0]]), **extra_args)
        return x * ((1 + sigmas[1] ** 2) / (1 + sigmas[0] ** 2)) ** 0.5
    return sample_dpmpp_2m(model, x, sigmas, extra_args, callback, disable)


SAMPLERS = {"euler": sample_euler, "euler_ancestral": sample_euler_ancestral, "dpmpp_2m": sample_dpmpp_2m}
