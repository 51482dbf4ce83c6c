"""W2SD with Euler/DDIM steps (Bai, Sugiyama, Xie, arXiv 2502.00473, Alg. 1)."""

from __future__ import annotations

import torch
from torch import Tensor

from .diagnostics import ReflectionDiagnostics
from .reflection import check_inversion, reflect
from .steps import Denoiser, euler_step
from .window import ReflectionWindow, schedule_values


@torch.no_grad()
def sample_w2sd(
    x: Tensor,
    sigmas: Tensor,
    strong: Denoiser,
    weak: Denoiser,
    main: Denoiser | None = None,
    reflect_steps: int | None = None,
    inversion_iters: int = 0,
    *,
    inversion: str = "explicit",
    diagnostics: ReflectionDiagnostics | None = None,
) -> Tensor:
    """Weak-to-Strong Diffusion with reflection, Euler/DDIM steps (paper Alg. 1).

    `x` is the initial noise times `sigmas[0]`. The first `reflect_steps` steps (lambda; default
    `len(sigmas) - 2`, every step but the one into sigma 0) are each preceded by the reflection
    `x <- M_inv^weak(M^strong(x))`; every step then is a plain Euler step of `main` (default `strong`).
    `reflect_steps=0` is the plain Euler sampler, bit for bit. S2WD: swap `strong` and `weak`.
    """
    check_inversion(inversion, inversion_iters)
    main = strong if main is None else main
    values = schedule_values(sigmas)  # the one host read of the schedule
    if reflect_steps is None:
        reflect_steps = max(len(values) - 2, 0)
    mask = ReflectionWindow.steps(reflect_steps).mask(values)
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        if mask[i]:
            # 1. Reflection: strong step down, weak inversion back up.
            x_tilde = reflect(x, sigmas[i], sigmas[i + 1], strong, weak, inversion_iters, inversion)
            if diagnostics is not None:
                diagnostics.record(i, values[i], x, x_tilde)
            x = x_tilde
        # 2. The regular step, the same ops in the same order as k-diffusion's sample_euler.
        denoised = main(x, sigmas[i] * s_in)
        x = euler_step(x, sigmas[i], sigmas[i + 1], denoised)
    return x
