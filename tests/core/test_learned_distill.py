"""benchmarks/learned_distill.py's distillation target, with toy denoisers of known answer: no ComfyUI."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import learned_distill as ld  # noqa: E402

GRID = torch.tensor([14.6146, 7.3020, 4.0861, 2.4960, 1.6156, 1.0712, 0.6951, 0.3997, 0.0])
"""ComfyUI 0.3.75's sgm_uniform(8) at SD1.5's sigmas (learned_distill's first student grid is GRID[::2])."""


class Gaussian:
    """The exact denoiser of data x0 ~ N(mu, 1) per element: D(x, s) = (x + s^2 mu) / (1 + s^2)."""

    def __init__(self, mu: float) -> None:
        self.mu = mu

    def apply_model(self, x: torch.Tensor, sigma: torch.Tensor, c_crossattn: object = None) -> torch.Tensor:
        s2 = sigma.view(-1, 1, 1, 1) ** 2
        return (x + s2 * self.mu) / (1 + s2)


class Fixed:
    """A denoiser that answers `x0` whatever it is asked."""

    def __init__(self, x0: torch.Tensor) -> None:
        self.x0 = x0

    def apply_model(self, x: torch.Tensor, sigma: torch.Tensor, c_crossattn: object = None) -> torch.Tensor:
        return self.x0.expand_as(x)


def test_one_student_step_lands_where_two_teacher_steps_do():
    gen = torch.Generator().manual_seed(0)
    teacher = Gaussian(0.3)
    x = torch.randn(4, 4, 8, 8, generator=gen) * GRID[[0, 2, 4, 6]].view(-1, 1, 1, 1)
    s, s_mid, s_next = GRID[[0, 2, 4, 6]], GRID[[1, 3, 5, 7]], GRID[[2, 4, 6, 8]]
    target = ld.distillation_target(teacher, x, s, s_mid, s_next, None)
    two = ld.euler_step(teacher, ld.euler_step(teacher, x, s, s_mid, None), s_mid, s_next, None)
    one = ld.euler_step(Fixed(target), x, s, s_next, None)
    assert torch.allclose(one, two, atol=1e-4)
    assert torch.allclose(target[-1], two[-1])  # the last step ends at sigma 0: the target is where it lands
    assert not torch.allclose(target, teacher.apply_model(x, s))  # the teacher's own one step misses


def test_a_denoiser_that_ignores_x_and_sigma_needs_no_distilling():
    """Euler is exact when D depends on neither x nor sigma: a student equal to such a teacher has no loss."""
    gen = torch.Generator().manual_seed(1)
    x0 = torch.randn(1, 4, 8, 8, generator=gen)
    batch = {
        "x0": torch.randn(6, 4, 8, 8, generator=gen),
        "noise": torch.randn(6, 4, 8, 8, generator=gen),
        "sigma": GRID[:-1:2][torch.tensor([0, 1, 2, 3, 0, 3])],
        "cond": None,
    }
    assert float(ld.distillation_loss(Fixed(x0), Fixed(x0), batch, GRID)) < 1e-8
    assert float(ld.distillation_loss(Fixed(x0 + 0.1), Fixed(x0), batch, GRID)) > 1e-3
