"""reflect(): Theorem 1 of arXiv 2502.00473, inversion accuracy, the reference inversion, shapes, dtypes."""

import pytest
import torch
from gmm import GMM, one_d

from w2sd_core import denoise_step, invert, reflect, to_d

STRONG, WEAK = one_d(0.3), one_d(0.05)


def points(n: int = 256, seed: int = 0, scale: float = 3.0) -> torch.Tensor:
    return torch.randn(n, 1, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * scale


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual - expected).norm() / expected.norm()).item()


@pytest.mark.parametrize("inversion_iters", [0, 3])
def test_theorem_1_reflection_follows_the_weak_to_strong_score_difference(inversion_iters: int) -> None:
    # x~ - x -> sigma * (sigma - sigma_next) * (grad log p_s - grad log p_w) as the step shrinks, O(h).
    x, sigma = points(), 2.0
    delta = STRONG.score(x, sigma) - WEAK.score(x, sigma)
    errors = []
    for h in (0.4, 0.1, 0.025, 0.00625):
        x_tilde = reflect(x, sigma, sigma - h, STRONG, WEAK, inversion_iters)
        errors.append(relative_error(x_tilde - x, sigma * h * delta))
    assert all(later < 0.5 * earlier for earlier, later in zip(errors, errors[1:], strict=False)), errors
    assert errors[-1] < 0.01, errors


def test_theorem_1_in_two_dimensions() -> None:
    means = [[-3.0, -3.0], [3.0, 3.0], [-3.0, 3.0]]
    strong, weak = GMM(means, [0.2, 0.4, 0.4], 0.5), GMM(means, [0.05, 0.5, 0.45], 0.5)
    x = torch.randn(128, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 4
    sigma = 3.0
    delta = strong.score(x, sigma) - weak.score(x, sigma)
    errors = [
        relative_error(reflect(x, sigma, sigma - h, strong, weak) - x, sigma * h * delta)
        for h in (0.3, 0.03, 0.003)
    ]
    assert errors[0] > errors[1] > errors[2] and errors[2] < 0.01, errors


def test_strong_equal_weak_fixed_point_inversion_converges_to_identity() -> None:
    # With one model, an exact inversion undoes the step: x~ = x. The explicit inverse is off by O(h^2).
    x, sigma, sigma_next = points(), 5.0, 4.0
    errors = [
        (reflect(x, sigma, sigma_next, STRONG, STRONG, k) - x).abs().max().item() for k in (0, 1, 3, 10)
    ]
    assert errors[0] > errors[1] > errors[2] > errors[3], errors
    assert errors[3] < 1e-8, errors


def test_explicit_inversion_is_the_paper_formula() -> None:
    x, sigma, sigma_next = points(), 3.0, 2.5
    s = torch.full((x.shape[0],), sigma, dtype=x.dtype)
    s_next = torch.full((x.shape[0],), sigma_next, dtype=x.dtype)
    x_down = x + (sigma_next - sigma) * (x - STRONG(x, s)) / sigma
    expected = x_down + (sigma - sigma_next) * (x_down - WEAK(x_down, s_next)) / sigma_next
    assert torch.allclose(reflect(x, sigma, sigma_next, STRONG, WEAK), expected, rtol=0, atol=1e-12)
    assert torch.allclose(denoise_step(x, sigma, sigma_next, STRONG), x_down, rtol=0, atol=1e-12)


def test_reference_inversion_queries_the_weak_model_at_the_target_level() -> None:
    # Official code (EPS): the weak model sees the VP latent of x' labelled with sigma_i.
    x_down, sigma, sigma_next = points(), 3.0, 2.5
    x_in = x_down * ((1 + sigma**2) / (1 + sigma_next**2)) ** 0.5
    s = torch.full((x_down.shape[0],), sigma, dtype=x_down.dtype)
    expected = x_down + (sigma - sigma_next) * (x_in - WEAK(x_in, s)) / sigma
    actual = invert(x_down, sigma, sigma_next, WEAK, inversion="reference")
    assert torch.allclose(actual, expected, rtol=0, atol=1e-12)
    # Same latent, same label: not equal to the explicit inversion.
    assert not torch.allclose(actual, invert(x_down, sigma, sigma_next, WEAK))


def test_reflection_costs_two_plus_iters_evaluations_with_batch_sigmas() -> None:
    seen: list[tuple[str, torch.Tensor]] = []

    def recorder(name: str, model: GMM):  # type: ignore[no-untyped-def]
        def denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            seen.append((name, sigma))
            return model(x, sigma)

        return denoise

    x = points(8)
    reflect(x, torch.tensor(3.0, dtype=torch.float64), torch.tensor(2.0, dtype=torch.float64),
            recorder("strong", STRONG), recorder("weak", WEAK), inversion_iters=2)  # fmt: skip
    assert [name for name, _ in seen] == ["strong", "weak", "weak", "weak"]
    assert all(s.shape == (8,) for _, s in seen)
    assert [s[0].item() for _, s in seen] == [3.0, 2.0, 3.0, 3.0]


def test_warm_start_is_theorem_1_first_order_form_at_one_point() -> None:
    # One strong and one weak evaluation, both at (x, sigma): x~ - x = h * (d_w - d_s) = (h / sigma) (D_s - D_w).
    x, sigma, sigma_next = points(), 3.0, 1.5
    s = torch.full((x.shape[0],), sigma, dtype=x.dtype)
    expected = x + (sigma - sigma_next) / sigma * (STRONG(x, s) - WEAK(x, s))
    actual = reflect(x, sigma, sigma_next, STRONG, WEAK, inversion="warm_start")
    assert torch.allclose(actual, expected, rtol=0, atol=1e-12)
    assert not torch.allclose(actual, reflect(x, sigma, sigma_next, STRONG, WEAK), atol=1e-3)


@pytest.mark.parametrize(("sigma", "sigma_next"), [(5.0, 4.0), (10.0, 3.0), (2.0, 0.5), (1.0, 0.2)])
def test_warm_start_undoes_the_strong_step_when_strong_equals_weak(sigma: float, sigma_next: float) -> None:
    # No gap, no reflection, at any step size, with no refinement: the explicit inverse is off by O(h^2)
    # (its error is what a small gap's reflection drowns in at large steps).
    x = points()
    assert (reflect(x, sigma, sigma_next, STRONG, STRONG, inversion="warm_start") - x).abs().max() < 1e-12
    assert (reflect(x, sigma, sigma_next, STRONG, STRONG) - x).abs().max() > 0.1


def test_warm_start_costs_what_explicit_costs_and_queries_both_sides_at_sigma() -> None:
    seen: list[tuple[str, float]] = []

    def recorder(name: str, model: GMM):  # type: ignore[no-untyped-def]
        def denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            seen.append((name, sigma[0].item()))
            return model(x, sigma)

        return denoise

    reflect(points(8), 3.0, 2.0, recorder("strong", STRONG), recorder("weak", WEAK), 1, "warm_start")
    assert seen == [("strong", 3.0), ("weak", 3.0), ("weak", 3.0)]
    with pytest.raises(ValueError, match="warm_start' needs start"):
        invert(points(4), 3.0, 2.0, WEAK, inversion="warm_start")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sigma": 1.0, "sigma_next": 0.0}, r"sigma_next=0\.0 must be above 0"),
        ({"sigma": 1.0, "sigma_next": 2.0}, r"sigma=1\.0 is below sigma_next=2\.0"),
        ({"inversion": "implicit"}, r"inversion='implicit' is not one of explicit, reference"),
        ({"inversion_iters": -1}, r"inversion_iters=-1 must be a whole number, 0 or more"),
    ],
)
def test_invalid_reflections_raise(kwargs: dict, message: str) -> None:
    args = {"sigma": 2.0, "sigma_next": 1.0, **kwargs}
    with pytest.raises(ValueError, match=message):
        reflect(points(4), strong=STRONG, weak=WEAK, **args)


@pytest.mark.parametrize("shape", [(2, 2), (2, 4, 8, 8), (1, 4, 3, 8, 8)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("sigma", [80.0, 1.0, 0.05])
def test_any_shape_and_dtype_stays_finite(shape: tuple[int, ...], dtype: torch.dtype, sigma: float) -> None:
    x = (torch.randn(shape, generator=torch.Generator().manual_seed(0)) * sigma).to(dtype)
    sigmas = torch.tensor([sigma, sigma * 0.8])
    out = reflect(x, sigmas[0], sigmas[1], STRONG, WEAK, inversion_iters=1)
    assert out.shape == x.shape and out.dtype == dtype
    assert torch.isfinite(out).all()
    ref = reflect(x, sigma, sigma * 0.8, STRONG, WEAK, inversion="reference")
    assert torch.isfinite(ref).all()


def test_to_d_takes_batch_sigmas() -> None:
    x, denoised = torch.ones(2, 3, 4), torch.zeros(2, 3, 4)
    d = to_d(x, torch.tensor([1.0, 2.0]), denoised)
    assert torch.equal(d[0], torch.ones(3, 4)) and torch.equal(d[1], torch.full((3, 4), 0.5))
