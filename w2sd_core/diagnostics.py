"""Per-step reflection diagnostics: is W2SD doing anything, and does it push one consistent way?

For each reflected step i it keeps the relative reflection size `|x~ - x| / |x|` and the cosine between
this step's direction `x~ - x` and the previous reflected step's (Theorem 1: the direction follows the
weak-to-strong score difference). Values stay on the device as 0-d tensors while sampling; they are read
back as floats only when asked, so recording never waits for the device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

# Clamps the norms of an all-zero latent or direction, so sizes and cosines stay finite.
_EPS = 1e-12


def _flat32(x: Tensor) -> Tensor:
    # float32 so that squared norms of fp16/bf16 latents at sigma ~80 cannot overflow.
    return x.reshape(x.shape[0], -1).float()


def reflection_size(x: Tensor, x_tilde: Tensor) -> Tensor:
    """`|x~ - x| / |x|` per batch element, averaged over the batch (0-d float32 tensor)."""
    a, b = _flat32(x), _flat32(x_tilde)
    size: Tensor = ((b - a).norm(dim=1) / a.norm(dim=1).clamp_min(_EPS)).mean()
    return size


def direction_cosine(u: Tensor, v: Tensor) -> Tensor:
    """Cosine between two directions per batch element (float32, shape [batch])."""
    a, b = _flat32(u), _flat32(v)
    cosine: Tensor = (a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(_EPS)
    return cosine


@dataclass
class ReflectionDiagnostics:
    """Fill by passing to `sample_w2sd` / `sample_with_reflection`; read with `sizes()` / `cosines()`."""

    steps: list[int] = field(default_factory=list)
    sigmas: list[float] = field(default_factory=list)
    _sizes: list[Tensor] = field(default_factory=list, repr=False)
    _cosines: list[Tensor] = field(default_factory=list, repr=False)
    _previous: Tensor | None = field(default=None, repr=False)

    def record(self, step: int, sigma: float, x: Tensor, x_tilde: Tensor) -> None:
        """Keeps the size and direction cosine of the reflection `x -> x_tilde` at `step` (no host sync)."""
        direction = _flat32(x_tilde - x)
        self.steps.append(step)
        self.sigmas.append(sigma)
        self._sizes.append(reflection_size(x, x_tilde))
        if self._previous is None:
            self._cosines.append(torch.full((), math.nan, device=x.device))
        else:
            self._cosines.append(direction_cosine(direction, self._previous).mean())
        self._previous = direction

    def __len__(self) -> int:
        return len(self.steps)

    def sizes(self) -> list[float]:
        """Reflection size `|x~ - x| / |x|` per reflected step (batch mean)."""
        return _floats(self._sizes)

    def cosines(self) -> list[float]:
        """Cosine between each reflection direction and the previous one; nan for the first."""
        return _floats(self._cosines)

    def as_dict(self) -> dict[str, list[float] | list[int]]:
        """Everything as plain python lists (steps, sigmas, sizes, cosines), e.g. for JSON or a plot."""
        return {
            "steps": list(self.steps),
            "sigmas": list(self.sigmas),
            "sizes": self.sizes(),
            "cosines": self.cosines(),
        }


def _floats(values: list[Tensor]) -> list[float]:
    if not values:
        return []
    # One transfer for the whole run.
    out: list[float] = torch.stack(values).cpu().tolist()
    return out
