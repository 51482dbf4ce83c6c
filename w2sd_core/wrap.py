"""W2SD reflections around any k-diffusion-style sampler (Bai et al., arXiv 2502.00473, Alg. 1-3).

`sampler_fn(model, x, sigmas, extra_args, callback, disable, **options)` keeps doing its own steps. Each
step in the window is preceded by a reflection (or a Re-Sampling) and taken as a one-step call of the
inner sampler; each run of steps outside the window is one call, so multistep solvers keep their history
there. Inside the window the history restarts every step (DPM++ 2M falls back to its first-order step),
unless `keep_history`: then the sampler runs once over the whole schedule and each reflection is made at
the sampler's own evaluation of its step, in place on the latent it evaluates -- for samplers that
evaluate the model exactly once per step, at the latent they then step from (DPM++ 2M, DEIS, iPNDM, LMS,
the multistep SDE solvers), whose history then carries through the window.
A sampler that cannot take a lone step (ComfyUI's UniPC takes none on a one-step schedule) is given a
`single_step` to run instead on every one-step call, e.g. `first_order_step` (its first-order step).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from .adaptive import StopTracker
from .diagnostics import ReflectionDiagnostics, reflection_size
from .reflection import check_inversion, invert, reflect
from .resampling import VARIANCE_EXPLODING, Noising, aligned_noise, draw_noise, renoise
from .steps import Denoiser, denoise_step
from .window import ReflectionWindow, schedule_values

MODES = ("w2sd", "s2wd", "resample", "resample_aligned")

SamplerFn = Callable[..., Tensor]
SingleStep = Callable[[Callable[..., Tensor], Tensor, Tensor, dict[str, Any]], Tensor]
"""`single_step(model, x, sigmas, extra_args) -> x`: one step over a one-step schedule (2 sigmas)."""
Callback = Callable[[dict[str, Any]], None]

# Re-Sampling noise comes from its own stream: a generator seeded with the bare seed would replay the
# initial latent noise (ComfyUI draws that from a CPU generator seeded the same way).
RESAMPLE_STREAM = 0x5732_5344  # "W2SD"
_SEED_SPAN = 2**64


def _offset_seed(seed: int, offset: int) -> int:
    """`seed + offset` kept in the range torch.Generator.manual_seed accepts; offset 0 leaves it as is."""
    if offset == 0:
        return seed
    out = seed + offset
    return out - _SEED_SPAN if out >= _SEED_SPAN else out


class EvaluationCounter:
    """Numbers every model evaluation (main, strong and weak) and reports each one to the callback."""

    def __init__(self, callback: Callback | None) -> None:
        self.callback = callback
        self.count = 0

    def report(self, role: str, x: Tensor, sigma: Tensor, denoised: Tensor) -> None:
        if self.callback is not None:
            self.callback(
                {
                    "i": self.count,
                    "x": x,
                    "denoised": denoised,
                    "sigma": sigma,
                    "sigma_hat": sigma,
                    "role": role,
                }
            )
        self.count += 1

    def denoiser(self, denoise: Denoiser, role: str) -> Denoiser:
        """`denoise` with each call counted and reported under `role`."""

        def counted(x: Tensor, sigma: Tensor) -> Tensor:
            denoised = denoise(x, sigma)
            self.report(role, x, sigma, denoised)
            return denoised

        return counted


class CountingModel:
    """The main model as the inner sampler sees it: evaluations are counted, attributes forwarded.

    ComfyUI samplers read e.g. `model.inner_model.inner_model.model_sampling`; those reads go through.
    """

    def __init__(self, model: Callable[..., Tensor], counter: EvaluationCounter, role: str = "main") -> None:
        self.model = model
        self.counter = counter
        self.role = role

    def __call__(self, x: Tensor, sigma: Tensor, **kwargs: Any) -> Tensor:
        denoised = self.model(x, sigma, **kwargs)
        self.counter.report(self.role, x, sigma, denoised)
        return denoised

    def __getattr__(self, name: str) -> Any:
        # Only reached for names not set in __init__; guard them against recursion (copy, pickle).
        if name in ("model", "counter", "role"):
            raise AttributeError(name)
        return getattr(self.model, name)


class ReusedFirstCall:
    """The main model whose first call returns `denoised` (already computed) instead of evaluating.

    Attribute reads go through to the model, as for `CountingModel`.
    """

    def __init__(self, model: Callable[..., Tensor], denoised: Tensor) -> None:
        self.model = model
        self.denoised: Tensor | None = denoised

    def __call__(self, x: Tensor, sigma: Tensor, **kwargs: Any) -> Tensor:
        if self.denoised is None:
            return self.model(x, sigma, **kwargs)
        denoised, self.denoised = self.denoised, None
        return denoised

    def __getattr__(self, name: str) -> Any:
        if name in ("model", "denoised"):
            raise AttributeError(name)
        return getattr(self.model, name)


def _reflect_step(
    mode: str,
    x: Tensor,
    sigma: Tensor,
    sigma_next: Tensor,
    strong: Denoiser,
    weak: Denoiser,
    inversion_iters: int,
    inversion: str,
    generator: torch.Generator,
    noising: Noising,
) -> Tensor:
    """The latent the window step starts from: reflected (W2SD / S2WD) or re-sampled (Alg. 2 / 3)."""
    if mode in ("w2sd", "s2wd"):
        return reflect(x, sigma, sigma_next, strong, weak, inversion_iters, inversion)
    x_down = denoise_step(x, sigma, sigma_next, strong)
    if mode == "resample":
        noise = draw_noise(x, generator)
    else:
        x_tilde = invert(x_down, sigma, sigma_next, weak, inversion_iters, inversion, start=x)
        noise = aligned_noise(x_tilde - x, generator)
    return renoise(x_down, sigma, sigma_next, noise, noising)


@torch.no_grad()
def sample_with_reflection(
    sampler_fn: SamplerFn,
    model: Callable[..., Tensor],
    x: Tensor,
    sigmas: Tensor,
    extra_args: dict[str, Any] | None = None,
    callback: Callback | None = None,
    disable: bool | None = None,
    *,
    strong: Denoiser,
    weak: Denoiser,
    window: ReflectionWindow,
    mode: str = "w2sd",
    inversion_iters: int = 0,
    inversion: str = "explicit",
    seed: int | None = None,
    diagnostics: ReflectionDiagnostics | None = None,
    single_step: SingleStep | None = None,
    stop: StopTracker | None = None,
    reuse_strong: bool = False,
    noising: Noising = VARIANCE_EXPLODING,
    keep_history: bool = False,
    **options: Any,
) -> Tensor:
    """Runs `sampler_fn` over `sigmas` with W2SD reflections before each step in `window`.

    `model(x, sigma, **extra_args)` is the main model (it takes the sampler's own steps); `strong` and
    `weak` are denoisers `D(x, sigma)`. `mode`: "w2sd" (Alg. 1), "s2wd" (roles swapped, a sanity
    check that should look worse), "resample" (vanilla Re-Sampling, Alg. 2) or "resample_aligned"
    (Alg. 3). Window step i is a one-step call on `sigmas[i:i+2]`; runs of steps outside the window are
    one call each. Each call gets a copy of `extra_args` whose "seed" (from `seed`, else
    `extra_args["seed"]`) is offset by the index of its first step, so ancestral/SDE noise differs per
    step and is reproducible. One-step calls get `disable=True` (progress is reported per evaluation
    through `callback`). An empty window is one plain call over the whole schedule.
    `single_step`, when given, replaces `sampler_fn` on every one-step call (window steps and a lone step
    outside the window), for samplers that cannot be cut into steps; runs of two or more steps still go
    to `sampler_fn`, and an empty window never uses it.
    `stop` (from `AdaptiveStop.tracker()`) ends the window early once reflections collapse; it reads
    each reflection's size back to the host after the following step has been started, and keeps the
    sizes and the reason it stopped.
    `reuse_strong` (W2SD only; for callers whose main model and strong side are the same denoiser):
    the step after a reflection takes the reflection's strong evaluation, made at the latent before the
    reflection, as its first model evaluation instead of evaluating again at the reflected latent. One
    evaluation less per reflected step; an approximation, close at high noise, where the denoiser's
    output barely depends on the latent.
    `noising` (Re-Sampling only): how the latent mixes data and noise at a sigma, so the re-noised latent
    has the model's own signal level (`FLOW` for flow models); variance-exploding by default.
    `keep_history`: one call of `sampler_fn` over the whole schedule; its model call k is taken as step k's
    one evaluation, and a window step's reflection replaces, in place, the latent that call receives. Only
    for samplers that call the model exactly once per step with the latent they step from (the caller
    decides; `single_step` is then unused): multistep solvers keep their history and SDE samplers their
    noise, so with strong == weak and an exact inversion W2SD is the plain sampler.
    """
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is not one of {', '.join(MODES)}")
    if reuse_strong and mode != "w2sd":
        raise ValueError(
            f"reuse_strong works with mode='w2sd' only (the strong step is the main one), not {mode!r}"
        )
    check_inversion(inversion, inversion_iters)
    extra_args = {} if extra_args is None else extra_args
    values = schedule_values(sigmas)  # the one host read of the schedule
    mask = window.mask(values)
    total = len(values) - 1

    counter = EvaluationCounter(callback)
    main = CountingModel(model, counter)
    strong_c, weak_c = counter.denoiser(strong, "strong"), counter.denoiser(weak, "weak")
    if mode == "s2wd":
        strong_c, weak_c = weak_c, strong_c
    base_seed = seed if seed is not None else extra_args.get("seed")

    def args_from(step: int) -> dict[str, Any]:
        args = dict(extra_args)  # never change the caller's dict
        if base_seed is not None:
            args["seed"] = _offset_seed(base_seed, step)
        return args

    if not any(mask):
        return sampler_fn(main, x, sigmas, args_from(0), None, disable, **options)
    step = _Stepper(mode, sigmas, values, mask, strong_c, weak_c, inversion_iters, inversion, noising,
                    diagnostics, stop, reuse_strong, base_seed)  # fmt: skip
    if keep_history:  # the latent is reflected in place: on a copy, never on the caller's tensor
        in_loop = _ReflectingModel(main, step)
        return sampler_fn(in_loop, x.clone(), sigmas, args_from(0), None, disable, **options)

    def run(x: Tensor, start: int, end: int, quiet: bool | None, first: Tensor | None = None) -> Tensor:
        """The inner sampler over steps start .. end-1 (`single_step` for a lone step when given);
        `first`, when given, is its first model evaluation, already made."""
        model_now = main if first is None else ReusedFirstCall(main, first)
        if single_step is not None and end - start == 1:
            return single_step(model_now, x, sigmas[start : end + 1], args_from(start))
        return sampler_fn(model_now, x, sigmas[start : end + 1], args_from(start), None, quiet, **options)

    i = 0
    while i < total:
        if mask[i]:
            x_new, first = step.reflect(i, x)
            x = run(x_new, i, i + 1, True, first)
            step.observe_stop(i)  # after the step is queued: a GPU works on it while the host decides
            i += 1
        else:
            end = i
            while end < total and not mask[end]:
                end += 1
            x = run(x, i, end, disable)
            i = end
    return x


class _Stepper:
    """The window's reflections, step by step: what both ways of running the sampler share."""

    def __init__(
        self, mode: str, sigmas: Tensor, values: list[float], mask: list[bool], strong: Denoiser,
        weak: Denoiser, inversion_iters: int, inversion: str, noising: Noising,
        diagnostics: ReflectionDiagnostics | None, stop: StopTracker | None, reuse_strong: bool,
        base_seed: int | None,
    ) -> None:  # fmt: skip
        self.mode, self.sigmas, self.values, self.mask = mode, sigmas, values, mask
        self.strong, self.weak = strong, weak
        self.inversion_iters, self.inversion, self.noising = inversion_iters, inversion, noising
        self.diagnostics, self.stop, self.reuse_strong = diagnostics, stop, reuse_strong
        # reuse_strong: the reflection's strong evaluation, for the step after it
        self.kept: list[Tensor] = []
        self.size: Tensor | None = None
        resample_seed = _offset_seed(base_seed or 0, RESAMPLE_STREAM) % _SEED_SPAN
        self.generator = torch.Generator("cpu").manual_seed(resample_seed)

    def _strong_kept(self, v: Tensor, sigma: Tensor) -> Tensor:
        self.kept.append(self.strong(v, sigma))
        return self.kept[-1]

    def reflect(self, i: int, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """Window step i's starting latent, and (reuse_strong) the evaluation the step may take as its own."""
        self.kept.clear()
        strong = self._strong_kept if self.reuse_strong else self.strong
        x_new = _reflect_step(
            self.mode, x, self.sigmas[i], self.sigmas[i + 1], strong, self.weak,
            self.inversion_iters, self.inversion, self.generator, self.noising,
        )  # fmt: skip
        if self.diagnostics is not None:
            self.diagnostics.record(i, self.values[i], x, x_new)
        self.size = reflection_size(x, x_new) if self.stop is not None else None
        return x_new, (self.kept[0] if self.kept else None)

    def observe_stop(self, i: int) -> None:
        """The adaptive window: once reflections collapse, no later step reflects (one host read)."""
        if self.size is not None and self.stop is not None and not self.stop.observe(i, float(self.size)):
            self.mask[i + 1 :] = [False] * (len(self.mask) - i - 1)
        self.size = None


class _ReflectingModel:
    """The main model for `keep_history`: its call k is step k's evaluation; in the window it first
    reflects the latent it is given, in place, so the sampler steps from the reflected latent.

    Attribute reads go through to the model, as for `CountingModel`.
    """

    def __init__(self, model: Callable[..., Tensor], step: _Stepper) -> None:
        self.model = model
        self.step = step
        self.calls = 0

    def __call__(self, x: Tensor, sigma: Tensor, **kwargs: Any) -> Tensor:
        i, self.calls = self.calls, self.calls + 1
        if 0 < i <= len(self.step.mask) and self.step.mask[i - 1]:
            self.step.observe_stop(i - 1)  # step i - 1 is queued by now
        if i >= len(self.step.mask) or not self.step.mask[i]:
            return self.model(x, sigma, **kwargs)
        x_new, first = self.step.reflect(i, x)
        x.copy_(x_new)
        return self.model(x, sigma, **kwargs) if first is None else first

    def __getattr__(self, name: str) -> Any:
        if name in ("model", "step", "calls"):
            raise AttributeError(name)
        return getattr(self.model, name)
