"""Weak-to-Strong Diffusion with Reflection (Bai, Sugiyama, Xie, arXiv 2502.00473) in pure torch.

k-diffusion conventions: a denoiser is `D(x, sigma) -> x0_hat` with `sigma` a 1-D tensor of length
batch; schedules decrease to 0. No ComfyUI import anywhere in this package.
"""

from .adaptive import AdaptiveStop, StopTracker
from .budget import BudgetPlan, equal_budget_plan, planned_nfe, reflection_cost
from .diagnostics import ReflectionDiagnostics, direction_cosine, reflection_size
from .reflection import INVERSIONS, invert, reflect
from .resampling import FLOW, VARIANCE_EXPLODING, Noising, aligned_noise, renoise
from .sampler import sample_w2sd
from .steps import Denoiser, denoise_step, euler_step, first_order_step, to_d
from .window import ReflectionWindow
from .wrap import MODES, CountingModel, SingleStep, sample_with_reflection

__all__ = [
    "AdaptiveStop",
    "FLOW",
    "INVERSIONS",
    "MODES",
    "VARIANCE_EXPLODING",
    "BudgetPlan",
    "CountingModel",
    "Noising",
    "Denoiser",
    "ReflectionDiagnostics",
    "ReflectionWindow",
    "SingleStep",
    "StopTracker",
    "aligned_noise",
    "denoise_step",
    "direction_cosine",
    "equal_budget_plan",
    "euler_step",
    "first_order_step",
    "invert",
    "planned_nfe",
    "reflect",
    "reflection_cost",
    "reflection_size",
    "renoise",
    "sample_w2sd",
    "sample_with_reflection",
    "to_d",
]
