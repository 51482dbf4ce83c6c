"""The reflection settings shared by the W2SD KSampler and the W2SD guider node: widgets and parsing."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch

from ..w2sd_core import AdaptiveStop, ReflectionWindow, equal_budget_plan
from .guider import (
    EVALS_PER_STEP,
    ReflectionSettings,
    inversion_refinements,
    reuse_with_cfg_pp,
)
from .input_checks import check_declared

log = logging.getLogger(__name__)

MODE_CHOICES = {
    "W2SD": "w2sd",
    "Re-Sampling (vanilla)": "resample",
    "Re-Sampling (aligned)": "resample_aligned",
    "S2WD (diagnosis)": "s2wd",
}
WINDOW_CHOICES = ("percent", "steps", "sigma")  # append only: saved workflows hold these values
LONGEST_SCHEDULE = 100_000  # steps / denoise: the full schedule a partial denoise is cut from


def reflection_inputs() -> dict[str, Any]:
    """Widgets for the reflection window, inversion and mode, with the paper's values in the tooltips."""
    return {
        "mode": (
            list(MODE_CHOICES),
            {
                "default": "W2SD",
                "tooltip": "W2SD reflects strong-down / weak-up (paper Alg. 1). Re-Sampling re-noises instead of the weak inversion (Alg. 2, aligned: Alg. 3). S2WD swaps the roles: it should look worse, a check that the pair points the right way.",
            },
        ),
        "window": (
            list(WINDOW_CHOICES),
            {
                "default": "percent",
                "tooltip": "How the reflection window is chosen. percent: start/end percent of the steps. steps: a number of first steps (reflect_steps). sigma: start/end percent of the noise level, as ComfyUI's ControlNet and conditioning timestep ranges read them (the model's percent_to_sigma), so the same percents pick the same noise levels whatever the scheduler and step count.",
            },
        ),
        "start_percent": (
            "FLOAT",
            {
                "default": 0.0,
                "min": 0.0,
                "max": 1.0,
                "step": 0.01,
                "tooltip": "window = percent: first step to reflect, as a fraction of the steps. window = sigma: the highest noise level reflected, sigma_hi = percent_to_sigma(start_percent) as ControlNet's start_percent (0 = from the first step).",
            },
        ),
        "end_percent": (
            "FLOAT",
            {
                "default": 1.0,
                "min": 0.0,
                "max": 1.0,
                "step": 0.01,
                "tooltip": "window = percent: reflect steps before this fraction of the steps. Default 1.0: every step but the last, as the paper's code does (the step into sigma 0 never reflects). 0.5 reflects the first half (the default before version 0.2.0; preset 'first half'). window = sigma: the lowest noise level reflected, sigma_lo = percent_to_sigma(end_percent) as ControlNet's end_percent; a step reflects when its starting sigma lies in [sigma_lo, sigma_hi], both ends included as ComfyUI applies a timestep range. 1.0 is sigma 0: with start_percent 0, every step but the last for any schedule.",
            },
        ),
        "reflect_steps": (
            "INT",
            {
                "default": -1,
                "min": -1,
                "max": 10000,
                "tooltip": "Reflect the first N steps (window = steps). -1 = every step but the last (paper code: lambda = T-1). The step into sigma 0 never reflects.",
            },
        ),
        "inversion": (
            ["explicit", "fixed_point", "reference", "warm_start"],
            {
                "default": "warm_start",
                "tooltip": "warm_start (default): one weak evaluation where the strong one was made (Theorem 1's first-order form): exact when strong == weak at any step size, so its error grows with the reflection, not with the step (few-step and karras schedules); inversion_iters refines it further. fixed_point: the paper's weak inversion refined inversion_iters times (at least 1), one weak NFE each; its error grows with the step (at 4 steps it alone moved a trained model far from stock). explicit: the paper's one-NFE inversion; with large steps its error turned the gain into a loss. reference: the official code's EPS inversion, to reproduce its numbers.",
            },
        ),
        "inversion_iters": (
            "INT",
            {
                "default": 0,
                "min": 0,
                "max": 50,
                "tooltip": "Fixed-point refinements of the inversion (inversion = warm_start, where 0 runs none; or fixed_point, where 0 runs 1); each costs one weak model evaluation per reflected step. With fixed_point, 1 measured as good as 3 on trained models.",
            },
        ),
        "equal_budget": (
            "BOOLEAN",
            {
                "default": False,
                "tooltip": "Spend no more model evaluations than plain sampling with `steps` steps (paper Fig. 13): sample floor(steps/2) steps and reflect the first floor(steps/4). Overrides the window.",
            },
        ),
    }


def adaptive_inputs() -> dict[str, Any]:
    """The adaptive window and cheaper reflections: optional, so prompts saved before them still validate."""
    return {
        "stop_ratio": (
            "FLOAT",
            {
                "default": 0.0,
                "min": 0.0,
                "max": 1.0,
                "step": 0.01,
                "tooltip": "Adaptive window: end the window early, after a reflection smaller than stop_ratio x the largest one so far (size |x~ - x| / |x|, as in reflection_plot). Measured: with karras schedules reflections peak early and collapse once strong and weak agree (the later ones change little); on the flow (SD3) digit models with the simple schedule they grew to the last step and the window never ended early. 0 = off (the window alone decides). Costs no extra model evaluation; the bottom line of reflection_plot says where it stopped.",
            },
        ),
        "reuse_strong": (
            "BOOLEAN",
            {
                "default": False,
                "tooltip": "Cheaper reflections: the step after a reflection reuses the reflection's strong evaluation instead of evaluating again at the reflected latent, one model evaluation less per reflected step (an approximation, close at high noise). Only for pairs whose strong side is the sampler's own model, prompt and cfg (a weak checkpoint, a weak prompt, a lower weak cfg). W2SD mode only.",
            },
        ),
        "keep_sampler_history": (
            "BOOLEAN",
            {
                "default": True,
                "tooltip": "On (default): multistep samplers (dpmpp_2m, deis, ipndm, lms, res_multistep, gradient_estimation, the dpmpp 2m/3m SDE samplers) keep their history through the window: the sampler runs once over the schedule and each reflection is made at its own step, so you get the sampler you chose. Samplers that evaluate the model twice or more per step (heun, dpm_2, dpmpp_sde, ...) cannot: their window steps are one-step calls, as with it off. Off: every reflected step is a one-step call, which restarts the history (a multistep solver takes Euler steps in the window; the behaviour before version 0.2.0, and what an API prompt without this input gets).",
            },
        ),
    }


def percent_to_sigma_of(model: Any) -> Callable[[float], float]:
    """The sampler's model's percent -> sigma (as ComfyUI maps ControlNet and conditioning ranges), rounded to
    float32: ComfyUI compares a range with the float32 sigma it samples at, so a bound is a float32 value."""

    def percent_to_sigma(percent: float) -> float:
        sigma = model.get_model_object("model_sampling").percent_to_sigma(percent)
        return float(torch.tensor(float(sigma), dtype=torch.float32))

    return percent_to_sigma


def window_from_inputs(
    window: str,
    start_percent: float,
    end_percent: float,
    reflect_steps: int,
    percent_to_sigma: Callable[[float], float] | None = None,
) -> ReflectionWindow:
    """The window the widgets describe; w2sd_core checks it against the real schedule when sampling.

    `percent_to_sigma` (window = sigma): the sampler's model's, `percent_to_sigma_of(model)`.
    """
    if window == "steps":
        # -1 = every step that can reflect (all but the step into sigma 0): the paper code's lambda = T-1.
        return (
            ReflectionWindow.percent(0.0, 1.0) if reflect_steps < 0 else ReflectionWindow.steps(reflect_steps)
        )
    if window == "percent":
        return ReflectionWindow.percent(start_percent, end_percent)
    if window == "sigma":
        if percent_to_sigma is None:
            raise ValueError(
                "window='sigma' needs the model's noise schedule (percent_to_sigma) to read the percents"
            )
        return ReflectionWindow.sigma_percent(start_percent, end_percent, percent_to_sigma)
    raise ValueError(f"window={window!r} is not one of {', '.join(WINDOW_CHOICES)}")


def validate_reflection_inputs(
    spec: dict[str, Any], input_types: dict[str, Any] | None = None, **values: Any
) -> bool | str:
    """VALIDATE_INPUTS for a node with the reflection widgets: every input checked against `spec`, then
    the window's own rules, before the prompt runs.

    `values` are the node's inputs, None where linked (known only when running); `input_types` the
    types of the linked ones (see input_checks.check_declared).
    """
    problem = check_declared(spec, input_types, **values)
    if problem:
        return problem
    window, steps = values.get("window"), values.get("steps")
    start_percent, end_percent = values.get("start_percent"), values.get("end_percent")
    reflect_steps = values.get("reflect_steps")
    if (
        window in ("percent", "sigma")
        and start_percent is not None
        and end_percent is not None
        and start_percent > end_percent
    ):
        return f"start_percent={start_percent} is after end_percent={end_percent} (window = {window}): the reflection window would be empty (allowed: 0 <= start_percent <= end_percent <= 1)."
    denoise = values.get("denoise")
    if steps is not None and denoise is not None and 0 < denoise < 1 and steps / denoise > LONGEST_SCHEDULE:
        return f"denoise={denoise} is too small for steps={steps}: ComfyUI would build a schedule of steps / denoise = {steps / denoise:.3g} steps to take the last {steps} (allowed: 0, or at least {steps / LONGEST_SCHEDULE:.3g})."
    if window == "steps" and steps is not None and reflect_steps is not None and reflect_steps > steps - 1:
        return f"reflect_steps={reflect_steps} is outside the schedule: with steps={steps} at most {steps - 1} can reflect (the step into sigma 0 never does); -1 = all."
    if values.get("equal_budget") and "steps" not in spec.get("required", {}):
        return EQUAL_BUDGET_WITHOUT_STEPS
    return settings_problem(**values) or True


EQUAL_BUDGET_WITHOUT_STEPS = (
    "equal_budget=True needs the step count, which a GUIDER does not set: use it on the W2SD KSampler, or halve "
    "your SIGMAS and reflect their first quarter."
)


def settings_problem(
    steps: int | None = None,
    sampler_name: str | None = None,
    mode: str | None = None,
    equal_budget: bool | None = None,
    reuse_strong: bool | None = None,
    **_: Any,
) -> str | None:
    """What refuses these widget values together, known before the prompt runs (None: nothing). Run again at
    run time, where a linked value is known; the sampler's own checks (a SAMPLER input) wait for the sampler."""
    if reuse_strong and mode is not None and MODE_CHOICES.get(mode) != "w2sd":
        return f"reuse_strong=True works in mode W2SD only (the strong step is then the sampler's own); mode is {mode!r}."
    if equal_budget and steps is not None and steps < 2:
        return f"equal_budget needs steps >= 2 (it samples steps // 2 and reflects a quarter); got steps={steps}."
    if reuse_strong and sampler_name is not None and "cfg_pp" in sampler_name:
        return reuse_with_cfg_pp(sampler_name)
    return None


def settings_from_inputs(
    steps: int | None,
    sampler_name: str | None,
    mode: str,
    window: str,
    start_percent: float,
    end_percent: float,
    reflect_steps: int,
    inversion: str,
    inversion_iters: int,
    equal_budget: bool,
    stop_ratio: float = 0.0,
    reuse_strong: bool = False,
    keep_sampler_history: bool = False,
    percent_to_sigma: Callable[[float], float] | None = None,
) -> tuple[ReflectionSettings, int]:
    """(settings, steps to sample). The equal-budget toggle halves the steps and sets the window.

    `percent_to_sigma`: the sampler's model's (`percent_to_sigma_of`), for window = sigma."""
    if mode not in MODE_CHOICES:
        raise ValueError(f"mode={mode!r} is not one of {', '.join(MODE_CHOICES)}")
    if problem := settings_problem(steps, None, mode, equal_budget, reuse_strong):
        raise ValueError(problem)
    if equal_budget:
        if steps is None:
            raise ValueError(EQUAL_BUDGET_WITHOUT_STEPS)
        plan = equal_budget_plan(steps, inversion_refinements(inversion, inversion_iters))
        log.info(
            "[W2SD] equal budget: %d steps -> %d steps, %d reflected", steps, plan.steps, plan.reflect_steps
        )
        steps, reflection_window = plan.steps, ReflectionWindow.steps(plan.reflect_steps)
    else:
        reflection_window = window_from_inputs(
            window, start_percent, end_percent, reflect_steps, percent_to_sigma
        )
    settings = ReflectionSettings(
        window=reflection_window,
        mode=MODE_CHOICES[mode],
        inversion=inversion,
        inversion_iters=inversion_iters,
        evals_per_step=EVALS_PER_STEP.get(sampler_name or "", 1),
        stop=AdaptiveStop(stop_ratio) if stop_ratio > 0 else None,
        reuse_strong=reuse_strong,
        keep_history=keep_sampler_history,
    )
    return settings, steps if steps is not None else 0
