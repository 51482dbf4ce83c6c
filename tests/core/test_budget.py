"""NFE accounting and the equal-budget plan (arXiv 2502.00473, Fig. 13)."""

import pytest

from w2sd_core import BudgetPlan, equal_budget_plan, planned_nfe


@pytest.mark.parametrize(
    ("steps", "plan"), [(50, (25, 12)), (20, (10, 5)), (7, (3, 1)), (3, (1, 0)), (2, (1, 0))]
)
def test_equal_budget_halves_the_steps_and_reflects_a_quarter(steps: int, plan: tuple[int, int]) -> None:
    result = equal_budget_plan(steps)
    assert (result.steps, result.reflect_steps) == plan
    assert result.nfe <= steps


@pytest.mark.parametrize("steps", range(2, 80))
@pytest.mark.parametrize("iters", [0, 1, 3])
def test_equal_budget_never_costs_more_than_plain_sampling(steps: int, iters: int) -> None:
    plan = equal_budget_plan(steps, inversion_iters=iters)
    assert plan.nfe <= steps and plan.reflect_steps <= max(plan.steps - 1, 0)
    if iters == 0:
        assert plan == BudgetPlan(steps // 2, (steps // 2) // 2)


def test_planned_nfe_per_mode() -> None:
    assert planned_nfe(50, 49) == 50 + 2 * 49
    assert planned_nfe(50, 49, inversion_iters=3) == 50 + 5 * 49
    assert planned_nfe(50, 49, mode="s2wd") == 148
    assert planned_nfe(50, 49, mode="resample") == 50 + 49
    assert planned_nfe(50, 49, mode="resample_aligned", inversion_iters=1) == 50 + 3 * 49
    assert planned_nfe(20, 10, evals_per_step=2) == 40 + 20


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: equal_budget_plan(1), r"steps=1 must be a whole number, 2 or more"),
        (lambda: planned_nfe(10, 11), r"reflect_steps=11 is more than steps=10"),
        (lambda: planned_nfe(10, 2, mode="zigzag"), r"mode='zigzag' is not one of"),
        (lambda: planned_nfe(10, 2, evals_per_step=0), r"evals_per_step=0 must be a whole number, 1 or more"),
        (lambda: planned_nfe(10, -1), r"reflect_steps=-1 must be a whole number, 0 or more"),
    ],
)
def test_invalid_plans_raise(call, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=message):
        call()
