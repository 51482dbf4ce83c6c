"""Which steps reflect: the first n steps (the paper's lambda), a sigma range, or start/end percent.

The paper reflects the first lambda steps (official code: lambda = T - 1). Late, low-noise reflections
amplify fine-detail disagreements between the two models, so windows by sigma or by percent of the
schedule are offered as well. A sigma window can be given as ComfyUI's start/end percents (ControlNet,
ConditioningSetTimestepRange), mapped through the model's own `percent_to_sigma`: the same percents then
mean the same noise levels whatever the schedule. The step into sigma 0 is never in a window: the weak
inversion would have to start from a clean sample.

A window can be read over a stage of a longer schedule (`window.stage(first_step, schedule_steps)`): the
sigmas given are then steps `first_step..` of a `schedule_steps`-step schedule, and the window's steps and
percents count in that whole schedule, so a two-stage run reflects the same steps as a one-stage run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from torch import Tensor

KINDS = ("steps", "sigma", "percent")


def _number(name: str, value: object, allowed: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise ValueError(f"reflection {name}={value!r} is not a number ({allowed})")
    return float(value)


def schedule_values(sigmas: Tensor | Sequence[float]) -> list[float]:
    """The sigmas as python floats, read from the device once (never per step)."""
    if isinstance(sigmas, Tensor):
        if sigmas.ndim != 1:
            raise ValueError(f"sigmas must be a 1-D schedule, got a tensor of shape {tuple(sigmas.shape)}")
        values: list[float] = sigmas.tolist()
        return values
    return [float(s) for s in sigmas]


@dataclass(frozen=True)
class ReflectionWindow:
    """The set of sampling steps that are preceded by a reflection.

    Build one with `ReflectionWindow.steps(n)`, `.sigma_range(hi, lo)`, `.sigma_percent(start, end,
    percent_to_sigma)` or `.percent(start, end)`.
    Step i goes from `sigmas[i]` to `sigmas[i + 1]`, of T = len(sigmas) - 1 steps; for a stage
    (`schedule_steps` > 0) it is step `first_step + i` of T = `schedule_steps`.
    """

    kind: str
    reflect_steps: int = 0
    hi: float = math.inf
    lo: float = 0.0
    start: float = 0.0
    end: float = 1.0
    first_step: int = 0
    schedule_steps: int = 0  # 0: the sigmas given are the whole schedule
    noise_percent: bool = False  # a sigma window made from start/end percents (`sigma_percent`)

    def __post_init__(self) -> None:
        for name in ("first_step", "schedule_steps"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"reflection window {name}={v!r} must be a whole number, 0 or more")
        if self.kind not in KINDS:
            raise ValueError(f"reflection window kind={self.kind!r} is not one of {', '.join(KINDS)}")
        if self.kind == "steps":
            n = self.reflect_steps
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                raise ValueError(f"reflection steps={n!r} must be a whole number, 0 or more")
        elif self.kind == "sigma":
            hi = _number("sigma hi", self.hi, "allowed: hi >= lo >= 0")
            lo = _number("sigma lo", self.lo, "allowed: hi >= lo >= 0")
            if lo < 0 or math.isinf(lo):
                raise ValueError(f"reflection sigma lo={lo} is outside 0..inf (allowed: hi >= lo >= 0)")
            if hi < lo:
                raise ValueError(f"reflection sigma hi={hi} is below lo={lo} (allowed: hi >= lo >= 0)")
        else:
            for name, value in (("start_percent", self.start), ("end_percent", self.end)):
                v = _number(name, value, "allowed: 0..1")
                if not 0.0 <= v <= 1.0:
                    raise ValueError(f"reflection {name}={v} is outside 0..1")
            if self.start > self.end:
                raise ValueError(
                    f"reflection start_percent={self.start} is after end_percent={self.end} "
                    "(allowed: 0 <= start_percent <= end_percent <= 1)"
                )

    @classmethod
    def steps(cls, n: int) -> ReflectionWindow:
        """The first n steps: the paper's lambda (Alg. 1 reflects while t > T - lambda)."""
        return cls("steps", reflect_steps=n)

    @classmethod
    def sigma_range(cls, hi: float, lo: float) -> ReflectionWindow:
        """Steps whose starting sigma lies in [lo, hi] (hi may be inf)."""
        return cls("sigma", hi=hi, lo=lo)

    @classmethod
    def sigma_percent(
        cls, start: float, end: float, percent_to_sigma: Callable[[float], float]
    ) -> ReflectionWindow:
        """ComfyUI's start/end percent (ControlNet, ConditioningSetTimestepRange): steps whose starting
        sigma lies in [percent_to_sigma(end), percent_to_sigma(start)], both ends included.

        `percent_to_sigma` is the model's (`model_sampling.percent_to_sigma`); it maps 1 to sigma 0, so
        `sigma_percent(0, 1, ...)` is every step but the last, as `percent(0, 1)`.
        """
        cls.percent(start, end)  # the same checks and messages as a percent window
        hi, lo = float(percent_to_sigma(start)), float(percent_to_sigma(end))
        return cls("sigma", hi=hi, lo=lo, start=start, end=end, noise_percent=True)

    @classmethod
    def percent(cls, start: float, end: float) -> ReflectionWindow:
        """Steps i with `start <= i / T < end`: a fraction of the steps, not of sigma or timestep.

        `percent(0, 1)` is every step but the last; `percent(0, 0.5)` the first half of the steps.
        """
        return cls("percent", start=start, end=end)

    def stage(self, first_step: int, schedule_steps: int) -> ReflectionWindow:
        """This window over steps `first_step..` of a `schedule_steps`-step schedule (one stage of it).

        Steps and percents count in the whole schedule; the stage reflects the window's steps it holds.
        """
        return replace(self, first_step=first_step, schedule_steps=schedule_steps)

    def mask(self, sigmas: Tensor | Sequence[float]) -> list[bool]:
        """One flag per step (`len(sigmas) - 1` of them): True where that step is reflected."""
        values = schedule_values(sigmas)
        total = len(values) - 1
        full, first = self.schedule_steps or total, self.first_step
        if first + total > full:
            raise ValueError(
                f"reflection stage of {total} steps from step {first} does not fit the {full}-step schedule "
                f"(allowed: first_step + stage steps <= {full})"
            )
        # A reflection inverts back up from sigma_next, so it needs sigma_next > 0.
        allowed = [values[i + 1] > 0 for i in range(total)]
        at = range(first, first + total)  # the steps' numbers in the whole schedule
        if self.kind == "steps":
            n = self.reflect_steps
            # A stage knows the whole schedule's length only: its last step is the one into sigma 0. A stage
            # that is forced to sigma 0 early does not reflect its last step (`allowed`).
            can = (
                full - 1
                if self.schedule_steps
                else next((i for i, ok in enumerate(allowed) if not ok), total)
            )
            if n > can:
                raise ValueError(
                    f"reflection steps={n} is more than this schedule allows: it has {full} steps and its "
                    f"first {can} can reflect (allowed: 0..{can}; the step into sigma 0 never reflects)"
                )
            chosen = [j < n for j in at]
        elif self.kind == "sigma":
            chosen = [self.lo <= values[i] <= self.hi for i in range(total)]
        else:
            chosen = [self.start <= j / full < self.end for j in at]
        return [c and a for c, a in zip(chosen, allowed, strict=True)]

    def count(self, sigmas: Tensor | Sequence[float]) -> int:
        """How many steps of this schedule the window reflects."""
        return sum(self.mask(sigmas))

    def describe(self) -> str:
        """A short human-readable form for logs and plot titles."""
        if self.kind == "steps":
            text = f"first {self.reflect_steps} steps"
        elif self.kind == "sigma" and self.noise_percent:
            text = f"noise {self.start:.0%}..{self.end:.0%} (sigma {self.hi:.3g} down to {self.lo:.3g})"
        elif self.kind == "sigma":
            text = f"sigma {self.lo:g}..{self.hi:g}"
        else:
            text = f"steps {self.start:.0%}..{self.end:.0%}"
        if self.schedule_steps:
            text += f" of {self.schedule_steps}, stage from step {self.first_step}"
        return text
