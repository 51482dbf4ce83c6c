"""An adaptive end to the reflection window: stop reflecting once reflections stop moving the latent.

By Theorem 1 (arXiv 2502.00473) a reflection moves the latent by `sigma * h * (grad log p_s - grad log
p_w)`: it is large while the strong and weak models disagree about where the sample is going and falls
away once both agree. Measured on Gaussian mixtures with exact denoisers, the relative size
`|x~ - x| / |x|` rises over the early steps, peaks, then collapses by orders of magnitude, and the
reflections after the collapse change nothing. `AdaptiveStop` ends the window at that collapse: after a
reflection smaller than `ratio` times the largest so far, no later step reflects.

The decision uses sizes the reflection already computed (no extra model evaluation). Reading a size is
one host read per reflected step; the sampler makes it after the next regular step has been queued, so
a GPU keeps that step's work while the host waits. Once stopped, nothing more is read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class AdaptiveStop:
    """Stop reflecting after a reflection smaller than `ratio` times the largest one so far.

    `ratio` 0 never stops (the window decides alone); 1 stops at the first reflection that is not a
    new largest. The window the sampler is given stays the outer limit.
    """

    ratio: float = 0.05

    def __post_init__(self) -> None:
        r = self.ratio
        if isinstance(r, bool) or not isinstance(r, int | float) or math.isnan(r) or not 0.0 <= r <= 1.0:
            raise ValueError(f"adaptive stop ratio={r!r} is outside 0..1 (allowed: 0 <= ratio <= 1)")

    def tracker(self) -> StopTracker:
        """A fresh per-run state (the rule itself is immutable and can be shared)."""
        return StopTracker(self.ratio)

    def describe(self) -> str:
        return f"stop below {self.ratio:g} x the largest reflection"


@dataclass
class StopTracker:
    """One run's decisions: the sizes seen, and where and why the window ended."""

    ratio: float
    sizes: list[float] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    stopped_at: int | None = None
    reason: str = ""

    @property
    def stopped(self) -> bool:
        return self.stopped_at is not None

    def observe(self, step: int, size: float) -> bool:
        """Records the reflection at `step`; True while later steps may still reflect."""
        if self.stopped:
            return False
        self.steps.append(step)
        self.sizes.append(size)
        largest = max(self.sizes)
        if size < self.ratio * largest or not math.isfinite(size):
            self.stopped_at = step
            self.reason = f"step {step}: size {size:.3g} < {self.ratio:g} x largest {largest:.3g}"
            return False
        return True
