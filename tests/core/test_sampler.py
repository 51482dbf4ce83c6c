"""sample_w2sd on the paper's 1-D experiment (arXiv 2502.00473, Sec. 3.2, Fig. 4) with exact denoisers.

Modes at -4 and +4, std 0.5; the ideal data is 50/50, the strong model saw 30% left samples, the weak
one 5%. T = 50 Karras steps up to sigma 20, a fixed seed. Measured (docs/ALGORITHM.md): left fraction strong
~0.33, weak ~0.07, ideal ~0.51, W2SD ~0.56, S2WD ~0.05.
"""

import math

import pytest
import torch
from gmm import karras_sigmas, left_fraction, one_d
from samplers import sample_euler

from w2sd_core import ReflectionDiagnostics, sample_w2sd

STRONG, WEAK, IDEAL = one_d(0.3), one_d(0.05), one_d(0.5)
SIGMAS = karras_sigmas(50, sigma_max=20.0)
N = 10_000


def initial_noise(n: int = N, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 1, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * SIGMAS[0]


@pytest.fixture(scope="module")
def fractions() -> dict[str, float]:
    x = initial_noise()
    plain = {name: sample_w2sd(x, SIGMAS, m, m, reflect_steps=0) for name, m in
             (("weak", WEAK), ("strong", STRONG), ("ideal", IDEAL))}  # fmt: skip
    runs = {
        **plain,
        "w2sd": sample_w2sd(x, SIGMAS, STRONG, WEAK),
        "w2sd_half": sample_w2sd(x, SIGMAS, STRONG, WEAK, reflect_steps=25),
        "s2wd": sample_w2sd(x, SIGMAS, WEAK, STRONG, main=STRONG),
    }
    return {name: left_fraction(out) for name, out in runs.items()}


def test_plain_samplers_reproduce_the_measured_fractions(fractions: dict[str, float]) -> None:
    assert fractions["weak"] == pytest.approx(0.07, abs=0.02)
    assert fractions["strong"] == pytest.approx(0.33, abs=0.02)
    assert fractions["ideal"] == pytest.approx(0.51, abs=0.02)


@pytest.mark.parametrize("run", ["w2sd", "w2sd_half"])
def test_w2sd_moves_the_minority_fraction_towards_the_ideal(fractions: dict[str, float], run: str) -> None:
    # At least 60% of the way from the strong model's fraction to the ideal one (measured: ~125%).
    progress = (fractions[run] - fractions["strong"]) / (fractions["ideal"] - fractions["strong"])
    assert progress >= 0.6, fractions
    assert fractions[run] == pytest.approx(0.56, abs=0.03)


def test_s2wd_moves_away_from_the_ideal(fractions: dict[str, float]) -> None:
    assert fractions["s2wd"] < fractions["strong"] - 0.1, fractions
    assert fractions["s2wd"] == pytest.approx(0.05, abs=0.03)


def test_no_reflection_is_plain_euler_bit_for_bit() -> None:
    for x in (initial_noise(64), initial_noise(64).float(), torch.randn(2, 4, 8, 8) * 20):
        sigmas = SIGMAS.to(x.dtype)
        model = STRONG
        expected = sample_euler(model, x, sigmas)
        assert torch.equal(sample_w2sd(x, sigmas, model, WEAK, reflect_steps=0), expected)


def test_same_model_with_exact_inversion_is_the_plain_sampler() -> None:
    # strong == weak: each reflection is the identity up to inversion error; 10 fixed-point
    # refinements make that error negligible (docs/ALGORITHM.md: median 7e-12 after 10).
    x = initial_noise(2000, seed=1)
    plain = sample_w2sd(x, SIGMAS, STRONG, STRONG, reflect_steps=0)
    refined = sample_w2sd(x, SIGMAS, STRONG, STRONG, inversion_iters=10)
    close = ((refined - plain).abs() < 1e-3).double().mean().item()
    assert close >= 0.95, close
    explicit = sample_w2sd(x, SIGMAS, STRONG, STRONG)
    # Without refinement the inversion error alone changes the samples (the paper's Table 13).
    assert (explicit - plain).abs().median() > 10 * (refined - plain).abs().median()


def test_defaults_reflect_every_step_but_the_last_and_main_takes_the_regular_steps() -> None:
    calls = {"strong": 0, "weak": 0, "main": 0}

    def counted(name: str):  # type: ignore[no-untyped-def]
        def denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            calls[name] += 1
            return STRONG(x, sigma)

        return denoise

    sigmas = SIGMAS[::5]  # 10 steps (the last one into 0)
    steps = len(sigmas) - 1
    sample_w2sd(initial_noise(8), sigmas, counted("strong"), counted("weak"), main=counted("main"))
    assert calls == {"strong": steps - 1, "weak": steps - 1, "main": steps}
    calls.update(strong=0, weak=0, main=0)
    sample_w2sd(
        initial_noise(8), sigmas, counted("strong"), counted("weak"), reflect_steps=3, inversion_iters=2
    )
    assert calls == {"strong": steps + 3, "weak": 3 * 3, "main": 0}


def test_reflect_steps_beyond_the_schedule_raise() -> None:
    with pytest.raises(ValueError, match=r"reflection steps=50 .*allowed: 0\.\.49"):
        sample_w2sd(initial_noise(4), SIGMAS, STRONG, WEAK, reflect_steps=50)


def test_diagnostics_record_each_reflection() -> None:
    diagnostics = ReflectionDiagnostics()
    sample_w2sd(initial_noise(256), SIGMAS, STRONG, WEAK, reflect_steps=20, diagnostics=diagnostics)
    assert diagnostics.steps == list(range(20))
    assert diagnostics.sigmas == pytest.approx(SIGMAS[:20].tolist())
    sizes, cosines = diagnostics.sizes(), diagnostics.cosines()
    assert len(sizes) == len(cosines) == 20
    assert all(s > 0 and math.isfinite(s) for s in sizes)
    assert math.isnan(cosines[0]) and all(-1 <= c <= 1 for c in cosines[1:])
    # Theorem 1: the push keeps pointing along the weak-to-strong difference, step after step.
    assert sum(c > 0 for c in cosines[1:]) >= 15, cosines
