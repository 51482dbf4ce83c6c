"""95% BCa bootstrap intervals over seeded samples (scipy.stats.bootstrap), plain and paired: rows
sampled from the same seeds are paired sample by sample (benchmarks/learned.py, tradeoff.py)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.stats


@dataclass
class Figure:
    """A figure with its 95% interval (low, high)."""

    value: float
    low: float
    high: float

    def text(self, digits: int = 3) -> str:
        return f"{self.value:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def bootstrap(stat: Callable[[np.ndarray], float], n: int, rounds: int, seed: int = 0) -> Figure:
    """The statistic on all n samples and its 95% BCa interval over resampled sample sets.

    BCa (scipy.stats.bootstrap): bias-corrected and accelerated, so a biased statistic such as the Frechet
    distance (resampling repeats samples, which reads it higher) gets an interval around its own value, not
    above it. Where every resample gives the same value (e.g. a share of 1.0) BCa is undefined and the
    interval is the percentile one of the same resamples.
    """
    value = float(stat(np.arange(n)))
    with warnings.catch_warnings():  # the degenerate case warns; it is handled below
        warnings.simplefilter("ignore")
        result = scipy.stats.bootstrap(
            (np.arange(n),),
            stat,
            n_resamples=rounds,
            vectorized=False,
            method="BCa",
            random_state=np.random.default_rng(seed),
        )
    low, high = result.confidence_interval
    if not (np.isfinite(low) and np.isfinite(high)):
        low, high = np.percentile(result.bootstrap_distribution, [2.5, 97.5])
    return Figure(value, float(low), float(high))


def paired_difference(
    a: Callable[[np.ndarray], float], b: Callable[[np.ndarray], float], n: int, rounds: int
) -> Figure:
    """a - b over the same resampled sample indices: rows sampled from the same seeds are paired (sample i
    of both starts from the same noise), so the interval of the difference is far tighter than either's."""
    return bootstrap(lambda idx: a(idx) - b(idx), n, rounds, seed=1)
