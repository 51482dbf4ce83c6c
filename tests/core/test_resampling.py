"""Re-Sampling (arXiv 2502.00473, Appendix E.3): vanilla (Alg. 2) and aligned with W2SD (Alg. 3)."""

import functools

import pytest
import torch
from gmm import karras_sigmas, left_fraction, one_d
from samplers import sample_euler

from w2sd_core import (
    FLOW,
    VARIANCE_EXPLODING,
    Noising,
    ReflectionWindow,
    aligned_noise,
    direction_cosine,
    renoise,
    sample_with_reflection,
)
from w2sd_core.resampling import draw_noise

STRONG, WEAK, IDEAL = one_d(0.3), one_d(0.05), one_d(0.5)
SIGMAS = karras_sigmas(50, sigma_max=20.0)


def test_renoise_goes_back_up_to_the_previous_level() -> None:
    x_next, eps = torch.zeros(3, 2), torch.ones(3, 2)
    assert torch.allclose(renoise(x_next, 5.0, 4.0, eps), torch.full((3, 2), 3.0))
    # Variance adds up: sigma_next^2 + (sigma^2 - sigma_next^2) = sigma^2.
    big = torch.randn(200_000, generator=torch.Generator().manual_seed(0))
    assert renoise(4.0 * big, 5.0, 4.0, torch.randn(200_000)).std().item() == pytest.approx(5.0, rel=0.01)


def test_variance_exploding_renoise_is_the_papers_formula_bit_for_bit() -> None:
    g = torch.Generator().manual_seed(3)
    for dtype, sigma, sigma_next in [
        (torch.float32, 14.6, 0.03),
        (torch.float64, torch.tensor(2.5, dtype=torch.float64), torch.tensor(1.7, dtype=torch.float64)),
        (torch.float16, torch.tensor(0.9), torch.tensor(0.4)),
    ]:
        x_next, eps = (torch.randn(2, 4, 8, 8, generator=g).to(dtype) for _ in range(2))
        paper = x_next + (sigma**2 - sigma_next**2) ** 0.5 * eps
        assert torch.equal(renoise(x_next, sigma, sigma_next, eps), paper)
        assert torch.equal(renoise(x_next, sigma, sigma_next, eps, VARIANCE_EXPLODING), paper)


# Cosine-schedule VP latent: not a ComfyUI sampling space, a third check of the general formula.
VARIANCE_PRESERVING = Noising(signal=lambda s: 1 / (1 + s**2) ** 0.5, noise=lambda s: s / (1 + s**2) ** 0.5)
X0 = torch.linspace(-2.0, 2.0, 8, dtype=torch.float64)  # fixed data, one value per column
DRAWS = 200_000


def draws(seed: int) -> torch.Tensor:
    return torch.randn(DRAWS, 8, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def noised(noising: Noising, sigma: float, seed: int) -> torch.Tensor:
    """The forward noising at sigma: DRAWS rows of `a(sigma) X0 + b(sigma) eps`."""
    return noising.signal(sigma) * X0 + noising.noise(sigma) * draws(seed)


@pytest.mark.parametrize(
    "noising,sigma,sigma_next",
    [
        (VARIANCE_EXPLODING, 5.0, 4.0),
        (VARIANCE_EXPLODING, 0.8, 0.1),
        (FLOW, 0.6, 0.3),
        (FLOW, 0.97, 0.9),
        (FLOW, 1.0, 0.7),  # the top of a flow schedule: pure noise
        (FLOW, 1.0, 1.0),  # no signal left before or after
        (VARIANCE_PRESERVING, 3.0, 0.5),
    ],
)
def test_renoise_gives_the_forward_noising_at_sigma(
    noising: Noising, sigma: float, sigma_next: float
) -> None:
    """x_next ~ a(n) x0 + b(n) eps, re-noised to sigma, has the statistics of a(s) x0 + b(s) eps: per
    value of x0, mean a(s) x0 and std b(s), and the residual is Gaussian."""
    x = renoise(noised(noising, sigma_next, seed=4), sigma, sigma_next, draws(5), noising)
    a, b = noising.signal(sigma), noising.noise(sigma)
    assert torch.allclose(x.mean(0), a * X0, atol=4 * b / DRAWS**0.5)
    assert torch.allclose(x.std(0), torch.full((8,), float(b), dtype=torch.float64), rtol=0.01)
    kurtosis = (((x - a * X0) / b) ** 4).mean().item()
    assert kurtosis == pytest.approx(3.0, abs=0.05)


def test_the_variance_exploding_formula_is_wrong_for_a_flow_latent() -> None:
    """What the modes did before flow models got their own noising: the noise level is right (std 0.6 either
    way) but the latent keeps x_next's signal, (1 - 0.3) x0 instead of (1 - 0.6) x0."""
    x_next, eps = noised(FLOW, 0.3, seed=4), draws(5)
    ve, flow = renoise(x_next, 0.6, 0.3, eps), renoise(x_next, 0.6, 0.3, eps, FLOW)
    assert torch.allclose(flow.mean(0), 0.4 * X0, atol=0.01)
    assert torch.allclose(ve.mean(0), 0.7 * X0, atol=0.01)
    assert torch.allclose(ve.std(0), flow.std(0), rtol=0.01)


def test_flow_renoise_to_sigma_one_is_the_fresh_noise_itself() -> None:
    x_next, eps = torch.randn(2, 16, 4, 4), torch.randn(2, 16, 4, 4)
    assert torch.equal(renoise(x_next, 1.0, 0.5, eps, FLOW), eps)
    assert torch.equal(renoise(x_next, torch.tensor(1.0), torch.tensor(1.0), eps, FLOW), eps)
    assert torch.isfinite(renoise(x_next, torch.tensor(0.7), torch.tensor(0.7), eps, FLOW)).all()


def test_resampling_in_a_flow_schedule_feeds_the_model_its_own_signal_level() -> None:
    """sample_with_reflection passes `noising` on: with the exact denoiser of one point x0, every latent
    the main model sees at sigma (after a re-noising) is (1 - sigma) x0 + sigma eps."""
    x0 = torch.full((1, 20_000), 2.0, dtype=torch.float64)
    seen: list[tuple[float, torch.Tensor]] = []

    def model(x: torch.Tensor, sigma: torch.Tensor, **_: object) -> torch.Tensor:
        seen.append((float(sigma[0]), x))
        return x0.expand_as(x)

    sigmas = torch.tensor([1.0, 0.8, 0.5, 0.2, 0.0], dtype=torch.float64)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)

    def sample(noising: Noising) -> list[tuple[float, torch.Tensor]]:
        seen.clear()
        sample_with_reflection(
            sample_euler, model, noise, sigmas, {"seed": 1}, strong=lambda x, s: x0.expand_as(x),
            weak=lambda x, s: x0.expand_as(x), window=ReflectionWindow.steps(3), mode="resample", noising=noising,
        )  # fmt: skip
        return list(seen)

    for sigma, x in sample(FLOW):
        assert x.mean().item() == pytest.approx((1 - sigma) * 2.0, abs=0.03)
        assert x.std().item() == pytest.approx(sigma, rel=0.03)
    # The variance-exploding re-noising keeps x_next's signal, which is larger than sigma's.
    wrong = [(sigma, x) for sigma, x in sample(VARIANCE_EXPLODING) if 0 < sigma < 1]
    assert all(x.mean().item() > (1 - sigma) * 2.0 + 0.1 for sigma, x in wrong)


@pytest.mark.parametrize("shape", [(64, 1), (8, 2), (2, 4, 8, 8), (1, 4, 3, 8, 8)])
def test_aligned_noise_has_positive_cosine_per_batch_element(shape: tuple[int, ...]) -> None:
    direction = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    eps = aligned_noise(direction, torch.Generator().manual_seed(2))
    assert eps.shape == direction.shape
    assert (direction_cosine(eps, direction) > 0).all()
    assert torch.equal(eps, aligned_noise(direction, torch.Generator().manual_seed(2)))


def test_aligned_noise_without_redraws_flips_the_sign() -> None:
    direction = torch.randn(256, 1, generator=torch.Generator().manual_seed(1))
    eps = aligned_noise(direction, torch.Generator().manual_seed(2), max_draws=1)
    first = draw_noise(direction, torch.Generator().manual_seed(2))
    assert torch.equal(eps.abs(), first.abs()) and (direction_cosine(eps, direction) > 0).all()
    with pytest.raises(ValueError, match="max_draws=0 must be 1 or more"):
        aligned_noise(direction, torch.Generator(), max_draws=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_noise_follows_the_latent_dtype(dtype: torch.dtype) -> None:
    direction = torch.randn(2, 4, 8, 8).to(dtype)
    eps = aligned_noise(direction, torch.Generator().manual_seed(0))
    assert eps.dtype == dtype and torch.isfinite(eps).all()


X = torch.randn(10_000, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * SIGMAS[0]


@functools.cache
def fraction(mode: str, steps: int, one_latent: bool = False) -> float:
    """Left-mode fraction after sampling with `steps` re-sampled steps (cached: several tests share runs)."""
    x = X.reshape(1, -1) if one_latent else X
    out = sample_with_reflection(
        sample_euler, STRONG, x, SIGMAS, {"seed": 11}, strong=STRONG, weak=WEAK,
        window=ReflectionWindow.steps(steps), mode=mode,
    )  # fmt: skip
    return left_fraction(out)


def test_vanilla_resampling_keeps_the_strong_models_balance() -> None:
    # Re-noising with random noise is W2SD with "add noise" as the weak model: it has no preferred
    # direction, so the minority fraction stays near the strong model's ~0.33.
    assert fraction("resample", 49) == pytest.approx(0.32, abs=0.03)


def test_aligned_resampling_beats_vanilla_and_overshoots_in_one_dimension() -> None:
    # In 1-D the per-sample cosine is just a sign, so every aligned redraw pushes the whole re-noise
    # along the W2SD direction: far stronger than the reflection itself. With the paper's lambda = 49
    # it overshoots the ideal 0.51 (measured ~1.0); one aligned step already lands near the ideal.
    vanilla, aligned = fraction("resample", 49), fraction("resample_aligned", 49)
    assert aligned > vanilla + 0.3
    assert aligned > 0.9  # documents the overshoot
    one_vanilla, one_aligned = fraction("resample", 1), fraction("resample_aligned", 1)
    assert abs(one_aligned - 0.51) < abs(one_vanilla - 0.51) - 0.05


def test_aligned_resampling_in_high_dimension_barely_differs_from_vanilla() -> None:
    # The same 10,000 values as one 10,000-dimensional latent (the image case): a positive cosine is a
    # weak constraint there, so aligned Re-Sampling is only slightly ahead of vanilla (measured +0.01).
    vanilla = fraction("resample", 49, one_latent=True)
    aligned = fraction("resample_aligned", 49, one_latent=True)
    assert 0.0 <= aligned - vanilla < 0.05
