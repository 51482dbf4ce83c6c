"""ReflectionWindow: steps, sigma range and percent windows; the step into sigma 0 never reflects."""

import math

import pytest
import torch

from w2sd_core import ReflectionWindow

SIGMAS = [14.0, 8.0, 4.0, 2.0, 1.0, 0.5, 0.25, 0.1, 0.05, 0.02, 0.0]  # 10 steps


def test_steps_window_is_the_first_n_steps() -> None:
    assert ReflectionWindow.steps(3).mask(SIGMAS) == [True] * 3 + [False] * 7
    assert ReflectionWindow.steps(0).mask(SIGMAS) == [False] * 10
    assert ReflectionWindow.steps(9).count(SIGMAS) == 9


def test_steps_window_never_reaches_sigma_zero() -> None:
    with pytest.raises(ValueError, match=r"reflection steps=10 .*\(allowed: 0\.\.9"):
        ReflectionWindow.steps(10).mask(SIGMAS)


def test_a_schedule_that_stops_above_zero_can_reflect_its_last_step() -> None:
    # The first half of a split schedule (SplitSigmas): its last step does not go into 0.
    assert ReflectionWindow.steps(5).mask(SIGMAS[:6]) == [True] * 5


def test_percent_is_a_fraction_of_the_steps() -> None:
    # Step i is in the window when start <= i / T < end.
    assert ReflectionWindow.percent(0.0, 0.5).mask(SIGMAS) == [True] * 5 + [False] * 5
    assert ReflectionWindow.percent(0.3, 0.6).mask(SIGMAS) == [False] * 3 + [True] * 3 + [False] * 4
    assert ReflectionWindow.percent(0.0, 1.0).mask(SIGMAS) == [True] * 9 + [False]
    assert ReflectionWindow.percent(0.4, 0.4).count(SIGMAS) == 0


def test_sigma_range_selects_by_the_steps_starting_sigma() -> None:
    assert (
        ReflectionWindow.sigma_range(4.0, 1.0).mask(SIGMAS) == [False, False, True, True, True] + [False] * 5
    )
    assert ReflectionWindow.sigma_range(math.inf, 0.0).count(SIGMAS) == 9


def percent_to_sigma(percent: float) -> float:
    """A model's percent -> sigma in ComfyUI's shape (ModelSamplingDiscrete): 0 -> "infinity", 1 -> 0."""
    if percent <= 0.0:
        return 999999999.9
    if percent >= 1.0:
        return 0.0
    return 16.0 * (1.0 - percent) ** 3  # 0.5 -> 2.0 and 0.75 -> 0.25: sigmas of SIGMAS


def test_sigma_percent_reads_percents_as_comfyui_reads_a_timestep_range() -> None:
    # hi = percent_to_sigma(start), lo = percent_to_sigma(end); a sigma on either bound is inside, as
    # comfy/samplers.py skips a cond only where sigma > timestep_start or sigma < timestep_end.
    window = ReflectionWindow.sigma_percent(0.5, 0.75, percent_to_sigma)
    assert (window.hi, window.lo) == (2.0, 0.25)
    assert window.mask(SIGMAS) == [False] * 3 + [True] * 4 + [False] * 3
    assert ReflectionWindow.sigma_percent(0.0, 0.5, percent_to_sigma).mask(SIGMAS) == [True] * 4 + [False] * 6
    # Not the steps' share: percent 0..0.5 of the steps is the first five.
    assert ReflectionWindow.percent(0.0, 0.5).count(SIGMAS) == 5


@pytest.mark.parametrize(
    "sigmas",
    [SIGMAS, SIGMAS[3:], [0.9, 0.6, 0.3, 0.1, 0.0], [1.0, 0.5, 0.0], [5.0, 0.0], [3.0, 2.0, 1.0]],
    ids=["karras-like", "partial denoise", "flow", "two steps", "one step", "stops above 0"],
)
def test_sigma_percent_0_to_1_is_every_step_but_the_last_as_percent_0_to_1(sigmas) -> None:  # type: ignore[no-untyped-def]
    assert ReflectionWindow.sigma_percent(0.0, 1.0, percent_to_sigma).mask(sigmas) == (
        ReflectionWindow.percent(0.0, 1.0).mask(sigmas)
    )


def test_sigma_percent_refuses_what_a_percent_window_refuses() -> None:
    with pytest.raises(ValueError, match=r"start_percent=0\.7 is after end_percent=0\.2"):
        ReflectionWindow.sigma_percent(0.7, 0.2, percent_to_sigma)
    with pytest.raises(ValueError, match=r"end_percent=1\.5 is outside 0\.\.1"):
        ReflectionWindow.sigma_percent(0.0, 1.5, percent_to_sigma)


def test_mask_takes_a_tensor_schedule() -> None:
    sigmas = torch.tensor(SIGMAS)
    assert ReflectionWindow.percent(0.0, 0.5).mask(sigmas) == ReflectionWindow.steps(5).mask(SIGMAS)


def test_degenerate_schedules() -> None:
    assert ReflectionWindow.steps(0).mask([1.0]) == []
    assert ReflectionWindow.percent(0, 1).mask([3.0, 0.0]) == [False]
    with pytest.raises(ValueError, match="1-D schedule"):
        ReflectionWindow.steps(1).mask(torch.zeros(2, 2))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: ReflectionWindow.steps(-1), r"reflection steps=-1 must be a whole number, 0 or more"),
        (lambda: ReflectionWindow.steps(2.5), r"reflection steps=2\.5 must be a whole number"),
        (lambda: ReflectionWindow.percent(0.0, 1.5), r"reflection end_percent=1\.5 is outside 0\.\.1"),
        (lambda: ReflectionWindow.percent(-0.1, 0.5), r"reflection start_percent=-0\.1 is outside 0\.\.1"),
        (lambda: ReflectionWindow.percent(0.7, 0.2), r"start_percent=0\.7 is after end_percent=0\.2"),
        (lambda: ReflectionWindow.percent(math.nan, 0.2), r"start_percent=nan is not a number"),
        (lambda: ReflectionWindow.sigma_range(1.0, 2.0), r"sigma hi=1\.0 is below lo=2\.0"),
        (lambda: ReflectionWindow.sigma_range(1.0, -1.0), r"sigma lo=-1\.0 is outside 0\.\.inf"),
        (lambda: ReflectionWindow("zigzag"), r"kind='zigzag' is not one of steps, sigma, percent"),
    ],
)
def test_invalid_windows_say_what_is_allowed(make, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=message):
        make()


def test_describe() -> None:
    assert ReflectionWindow.steps(4).describe() == "first 4 steps"
    assert ReflectionWindow.percent(0, 0.5).describe() == "steps 0%..50%"
    assert ReflectionWindow.sigma_range(10, 1).describe() == "sigma 1..10"
    assert ReflectionWindow.sigma_percent(0.5, 0.75, percent_to_sigma).describe() == (
        "noise 50%..75% (sigma 2 down to 0.25)"
    )


@pytest.mark.parametrize(
    "window",
    [
        ReflectionWindow.steps(4),
        ReflectionWindow.steps(9),
        ReflectionWindow.percent(0.0, 0.5),
        ReflectionWindow.percent(0.3, 0.8),
        ReflectionWindow.percent(0.0, 1.0),
        ReflectionWindow.sigma_range(4.0, 0.1),
        ReflectionWindow.sigma_percent(0.5, 0.75, percent_to_sigma),
    ],
    ids=lambda w: w.describe(),
)
@pytest.mark.parametrize("split", [1, 3, 5, 9])
def test_a_stage_reflects_the_whole_schedules_steps_it_holds(window, split) -> None:  # type: ignore[no-untyped-def]
    """Two stages (KSamplerAdvanced start/end, leftover noise in between) reflect the one-stage steps."""
    full = window.mask(SIGMAS)
    first = window.stage(0, 10).mask(SIGMAS[: split + 1])
    second = window.stage(split, 10).mask(SIGMAS[split:])
    assert first + second == full
    assert window.stage(0, 10).mask(SIGMAS) == full


def test_a_stage_forced_to_sigma_zero_does_not_reflect_its_last_step() -> None:
    # KSamplerAdvanced without leftover noise: the stage's last sigma is set to 0.
    assert ReflectionWindow.steps(9).stage(0, 10).mask([*SIGMAS[:4], 0.0]) == [True, True, True, False]
    assert ReflectionWindow.steps(9).stage(0, 10).mask(SIGMAS[:5]) == [True] * 4


def test_a_stage_counts_steps_and_percents_in_the_whole_schedule() -> None:
    assert ReflectionWindow.steps(2).stage(2, 10).mask(SIGMAS[2:6]) == [False] * 3
    assert ReflectionWindow.percent(0.5, 1.0).stage(4, 10).mask(SIGMAS[4:]) == [False] + [True] * 4 + [False]


@pytest.mark.parametrize(
    ("window", "stage", "message"),
    [
        (ReflectionWindow.steps(10), SIGMAS[:4], r"steps=10 .*it has 10 steps and its first 9 can reflect"),
        (
            ReflectionWindow.steps(1).stage(8, 10),
            SIGMAS[:4],
            r"stage of 3 steps from step 8 does not fit the 10-step",
        ),
    ],
)
def test_a_stage_that_does_not_fit_says_what_is_allowed(window, stage, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=message):
        (window if window.schedule_steps else window.stage(0, 10)).mask(stage)


def test_stage_fields_are_checked_and_described() -> None:
    with pytest.raises(ValueError, match=r"first_step=-1 must be a whole number, 0 or more"):
        ReflectionWindow.steps(1).stage(-1, 10)
    assert ReflectionWindow.percent(0, 0.5).stage(2, 4).describe() == "steps 0%..50% of 4, stage from step 2"
