"""What W2SD costs in model evaluations (NFE), and the equal-budget plan (arXiv 2502.00473, Fig. 13).

A W2SD reflection costs one strong and one weak evaluation, plus one weak evaluation per fixed-point
refinement of the inversion; vanilla Re-Sampling costs one strong evaluation; aligned Re-Sampling needs
the W2SD direction, so it costs what a reflection costs. With CFG each evaluation is itself a batch of
two unless cfg == 1: this counts evaluations of the guided model, not network passes.
"""

from __future__ import annotations

from dataclasses import dataclass

from .wrap import MODES


def _whole(name: str, value: int, least: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"{name}={value!r} must be a whole number, {least} or more")
    return value


def reflection_cost(mode: str = "w2sd", inversion_iters: int = 0, reuse_strong: bool = False) -> int:
    """Extra model evaluations per reflected step (`reuse_strong`: the next step reuses the strong one)."""
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is not one of {', '.join(MODES)}")
    _whole("inversion_iters", inversion_iters)
    if mode == "resample":
        return 1
    return 2 + inversion_iters - (1 if reuse_strong else 0)


def planned_nfe(
    steps: int,
    reflect_steps: int,
    inversion_iters: int = 0,
    mode: str = "w2sd",
    evals_per_step: int = 1,
    reuse_strong: bool = False,
) -> int:
    """Model evaluations of a plan: `steps * evals_per_step + reflect_steps * reflection_cost`.

    W2SD / S2WD / aligned Re-Sampling: `T * e + lambda * (2 + iters)` (`reuse_strong`: one less per
    reflected step); vanilla Re-Sampling: `T * e + lambda`. `evals_per_step` is the inner sampler's
    (1 for Euler / DPM++ 2M, 2 for Heun).
    """
    _whole("steps", steps)
    _whole("reflect_steps", reflect_steps)
    _whole("evals_per_step", evals_per_step, least=1)
    if reflect_steps > steps:
        raise ValueError(f"reflect_steps={reflect_steps} is more than steps={steps} (allowed: 0..steps)")
    return steps * evals_per_step + reflect_steps * reflection_cost(mode, inversion_iters, reuse_strong)


@dataclass(frozen=True)
class BudgetPlan:
    """A W2SD plan: sample `steps` steps and reflect the first `reflect_steps` of them."""

    steps: int
    reflect_steps: int
    inversion_iters: int = 0

    @property
    def nfe(self) -> int:
        return planned_nfe(self.steps, self.reflect_steps, self.inversion_iters)


def equal_budget_plan(steps: int, inversion_iters: int = 0) -> BudgetPlan:
    """W2SD at no more NFE than plain sampling with `steps` steps (paper Fig. 13).

    `T_w2s = steps // 2`, `lambda = T_w2s // 2`: `T_w2s + 2 * lambda <= steps`. With fixed-point
    refinements lambda shrinks further, to what the remaining `steps - T_w2s` evaluations pay for.
    """
    _whole("steps", steps, least=2)
    _whole("inversion_iters", inversion_iters)
    t_w2s = steps // 2
    lam = min(t_w2s // 2, (steps - t_w2s) // reflection_cost("w2sd", inversion_iters))
    return BudgetPlan(t_w2s, lam, inversion_iters)
