"""AdaptiveStop: the reflection window ends once reflections collapse (issue #12's adaptive window)."""

import math

import pytest
import torch
from gmm import corner_fraction, karras_sigmas, left_fraction, one_d, two_d
from samplers import sample_dpmpp_2m, sample_euler

from w2sd_core import AdaptiveStop, ReflectionWindow, sample_with_reflection

STRONG_2D = two_d([0.1, 0.3, 0.3, 0.3])
WEAK_2D = two_d([0.02, 0.98 / 3, 0.98 / 3, 0.98 / 3])


def run(strong, weak, dim, steps, window, stop=None, sampler=sample_euler):  # type: ignore[no-untyped-def]
    """(samples, model evaluations) of W2SD (1 fixed-point refinement) on a Karras schedule, 4,000 seeded samples."""
    x = torch.randn(4000, dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 20.0
    evaluations: list[str] = []
    out = sample_with_reflection(
        sampler, strong, x, karras_sigmas(steps), {"seed": 0}, lambda d: evaluations.append(d["role"]),
        strong=strong, weak=weak, window=window, inversion_iters=1, stop=stop,
    )  # fmt: skip
    return out, len(evaluations)


@pytest.mark.parametrize("ratio", [-0.1, 1.5, math.nan, True, "0.1"])
def test_a_ratio_outside_0_to_1_is_refused_by_name(ratio: object) -> None:
    with pytest.raises(ValueError, match=r"adaptive stop ratio=.* is outside 0\.\.1"):
        AdaptiveStop(ratio)  # type: ignore[arg-type]


def test_the_tracker_stops_after_the_first_reflection_below_ratio_times_the_largest() -> None:
    tracker = AdaptiveStop(0.1).tracker()
    assert tracker.observe(0, 1.0) and tracker.observe(1, 4.0) and tracker.observe(2, 0.5)
    assert not tracker.observe(3, 0.3)  # 0.3 < 0.1 x 4.0
    assert tracker.stopped_at == 3 and "size 0.3 < 0.1 x largest 4" in tracker.reason
    assert not tracker.observe(4, 9.0), "once stopped, it stays stopped"
    assert tracker.sizes == [1.0, 4.0, 0.5, 0.3]


def test_a_non_finite_reflection_stops_the_window() -> None:
    tracker = AdaptiveStop(0.0).tracker()
    assert tracker.observe(0, 1.0)
    assert not tracker.observe(1, math.nan)


@pytest.mark.parametrize("sampler", [sample_euler, sample_dpmpp_2m])
def test_stopping_early_is_the_fixed_window_that_ends_there_bit_for_bit(sampler) -> None:  # type: ignore[no-untyped-def]
    # The steps after the stop run as one call of the inner sampler, exactly as after a fixed window.
    strong, weak = one_d(0.3), one_d(0.05)
    tracker = AdaptiveStop(0.1).tracker()
    adaptive, nfe = run(strong, weak, 1, 20, ReflectionWindow.percent(0, 1), tracker, sampler)
    assert tracker.stopped_at is not None and 0 < tracker.stopped_at < 18
    fixed, fixed_nfe = run(strong, weak, 1, 20, ReflectionWindow.steps(tracker.stopped_at + 1), None, sampler)
    assert torch.equal(adaptive, fixed)
    assert nfe == fixed_nfe == 20 + 3 * (tracker.stopped_at + 1)


def test_ratio_zero_keeps_the_whole_window() -> None:
    strong, weak = one_d(0.3), one_d(0.05)
    window = ReflectionWindow.percent(0, 0.5)
    tracker = AdaptiveStop(0.0).tracker()
    with_stop, _ = run(strong, weak, 1, 10, window, tracker)
    assert torch.equal(with_stop, run(strong, weak, 1, 10, window)[0])
    assert not tracker.stopped and tracker.steps == list(range(5))


@pytest.mark.parametrize(
    ("strong", "weak", "dim", "share"),
    [(one_d(0.3), one_d(0.05), 1, left_fraction), (STRONG_2D, WEAK_2D, 2, corner_fraction)],
    ids=["1-D", "2-D"],
)
@pytest.mark.parametrize("steps", [10, 20])
def test_it_keeps_every_step_windows_gain_for_at_most_80_percent_of_its_extra_cost(
    strong, weak, dim, share, steps
) -> None:  # type: ignore[no-untyped-def]
    # Measured (20,000 samples): the reflections' size peaks, then falls by 10-1000x; the ones after
    # the fall change nothing. Reflecting every step but the last is the paper code's window.
    stock, stock_nfe = run(strong, weak, dim, steps, ReflectionWindow.steps(0))
    every, every_nfe = run(strong, weak, dim, steps, ReflectionWindow.percent(0, 1))
    adaptive, nfe = run(
        strong, weak, dim, steps, ReflectionWindow.percent(0, 1), AdaptiveStop(0.05).tracker()
    )
    gain = (share(adaptive) - share(stock)) / (share(every) - share(stock))
    assert share(every) - share(stock) > 0.05
    assert gain >= 0.95, f"adaptive keeps {gain:.2f} of the gain"
    assert nfe - stock_nfe <= 0.8 * (every_nfe - stock_nfe), f"NFE {nfe}, every step {every_nfe}"
