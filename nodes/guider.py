"""W2SD as a ComfyUI guider: every model call is routed to the main, strong or weak side.

Weak-to-Strong Diffusion with Reflection, arXiv 2502.00473. The sampler function is wrapped with
`w2sd_core.sample_with_reflection`; the strong and weak denoisers it receives are the usual ComfyUI
model function with a role placed in `transformer_options`, and `predict_noise` picks the side's model,
conds and cfg from that role. Side conds live in `self.conds` under extra keys so ComfyUI's own
prepare/process/cleanup handle a ControlNet attached to one side.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from typing import Any

import comfy.k_diffusion.sampling
import comfy.model_patcher
import comfy.model_sampling
import comfy.patcher_extension
import comfy.samplers
import torch

from ..w2sd_core import (
    VARIANCE_EXPLODING,
    AdaptiveStop,
    Noising,
    ReflectionDiagnostics,
    ReflectionWindow,
    StopTracker,
    first_order_step,
    planned_nfe,
    sample_with_reflection,
)
from . import compat
from .input_checks import first_line
from .lora_scales import role_scales, scales_of
from .pair import ROLES, Side, W2SDPair
from .patch_checks import (
    all_model_options,
    check_reflection_patches,
    check_side_sampling,
    prediction_type,
    without_caches,
)

log = logging.getLogger(__name__)

ROLE_KEY = "w2sd_role"
# ComfyUI's samplers whose SDE noise comes from a Brownian tree over the schedule's sigma range, built
# inside the call unless one is passed (value: the tree lives on the CPU). Inside the window every step
# is a call of its own; handing each the one tree stock builds for the whole schedule keeps their noise
# exactly stock's, and builds the tree (and its host reads) once instead of once per reflected step.
BROWNIAN_TREE_SAMPLERS = {
    "sample_dpmpp_sde": True, "sample_dpmpp_2m_sde": True, "sample_dpmpp_2m_sde_heun": True,
    "sample_dpmpp_3m_sde": True, "sample_dpmpp_sde_gpu": False, "sample_dpmpp_2m_sde_gpu": False,
    "sample_dpmpp_2m_sde_heun_gpu": False, "sample_dpmpp_3m_sde_gpu": False,
}  # fmt: skip
MODES = ("w2sd", "s2wd", "resample", "resample_aligned")
INVERSIONS = ("explicit", "fixed_point", "reference", "warm_start")


def inversion_refinements(inversion: str, inversion_iters: int) -> int:
    """Fixed-point refinements w2sd_core runs: fixed_point at least 1, warm_start as given, others none."""
    if inversion == "fixed_point":
        return max(inversion_iters, 1)
    return inversion_iters if inversion == "warm_start" else 0


# Model evaluations per step of ComfyUI's samplers that evaluate more than once per step (for the
# progress bar total only; the bar is clamped, so an estimate that is a little off is harmless).
EVALS_PER_STEP = {
    "heun": 2,
    "heunpp2": 3,
    "dpm_2": 2,
    "dpm_2_ancestral": 2,
    "dpmpp_2s_ancestral": 2,
    "dpmpp_2s_ancestral_cfg_pp": 2,
    "dpmpp_sde": 2,
    "dpmpp_sde_gpu": 2,
    "seeds_2": 2,
    "seeds_3": 3,
    "sa_solver_pece": 2,
    "exp_heun_2_x0": 2,
    "exp_heun_2_x0_sde": 2,
    "gradient_estimation": 1,
}


@dataclass(frozen=True)
class ReflectionSettings:
    window: ReflectionWindow
    mode: str = "w2sd"
    inversion: str = "explicit"
    inversion_iters: int = 0
    evals_per_step: int = 1
    stop: AdaptiveStop | None = None
    reuse_strong: bool = False
    keep_history: bool = (
        False  # reflect inside the sampler's own loop (compat.ONE_EVALUATION_PER_STEP_SAMPLERS)
    )

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode={self.mode!r} is not one of {', '.join(MODES)}")
        if self.inversion not in INVERSIONS:
            raise ValueError(f"inversion={self.inversion!r} is not one of {', '.join(INVERSIONS)}")
        if self.inversion_iters < 0:
            raise ValueError(f"inversion_iters={self.inversion_iters} must be 0 or more")

    @property
    def core_inversion(self) -> tuple[str, int]:
        """(inversion kind, fixed-point iterations) as w2sd_core takes them."""
        kind = "explicit" if self.inversion == "fixed_point" else self.inversion
        return kind, inversion_refinements(self.inversion, self.inversion_iters)


def model_label(patcher: Any) -> str:
    return type(getattr(patcher, "model", patcher)).__name__


def check_same_family(main: Any, side: Any, role: str) -> None:
    """Strong and weak must share the latent space and the noise parametrization of the main model."""
    # get_model_object: a ModelSamplingDiscrete node (an SD1.5 v-prediction checkpoint) patches the object
    # on the patcher; the model itself holds it only while that patcher is loaded.
    checks = (
        (
            "latent format",
            type(main.get_model_object("latent_format")).__name__,
            type(side.get_model_object("latent_format")).__name__,
        ),
        ("prediction type", prediction_type(main), prediction_type(side)),
    )
    for what, mine, theirs in checks:
        if mine != theirs:
            raise ValueError(
                f"W2SD pair: the {role} model ({model_label(side)}) has {what} {theirs}, but the sampler's model "
                f"({model_label(main)}) has {mine}. Strong, weak and main must be the same model family "
                "(e.g. SD1.5 with SD1.5 fine-tunes, SDXL with SDXL); mixing families gives garbage."
            )


class W2SDGuider(comfy.samplers.CFGGuider):
    """CFGGuider whose sampler reflects with a weak/strong pair during the reflection window."""

    def __init__(self, model_patcher: Any, pair: W2SDPair, settings: ReflectionSettings):
        if not isinstance(pair, W2SDPair):
            raise ValueError(
                f"pair must be connected to a W2SD_PAIR output (Weak/Strong Model Pair, LoRA-scale splitter or "
                f"CFG-gap config); got {type(pair).__name__}."
            )
        self.pair = pair
        self.settings = settings
        if compat.uses_multigpu(model_patcher):
            raise ValueError(
                "W2SD does not support MultiGPU work units yet: its per-call LoRA scale and role routing assume one "
                "model call at a time. Remove the MultiGPU node from this model's path."
            )
        self.main_model = model_patcher
        self.separate_models = self._separate_models(model_patcher, pair)
        if self.separate_models:
            # One load call for all checkpoints, so neither evicts the other between steps.
            model_patcher = model_patcher.clone()
            model_patcher.set_additional_models("w2sd_pair", list(self.separate_models))
        super().__init__(model_patcher)
        self.diagnostics: ReflectionDiagnostics | None = None
        self.stop_tracker: StopTracker | None = None
        self.side_conds: dict[str, dict] = {}  # role -> conds processed by that side's own checkpoint
        self.main_conds: tuple[Any, Any] = (None, None)  # the sampler's own positive / negative

    @staticmethod
    def _separate_models(main: Any, pair: W2SDPair) -> list[Any]:
        """Side models that must be loaded beside the main one (a different checkpoint)."""
        found: list[Any] = []
        for role in ROLES:
            model = pair.side(role).model
            if model is None or model is main or compat.same_weights(main, model):
                continue
            if compat.injected_on_top(main, model):
                # The sampler's model is this side's plus forward injections (LoraLoaderBypass after a
                # LoRA split): one set of weights; while it is loaded the injections act on every pass.
                continue
            if model.is_clone(main) and len(role_scales(main)) > len(role_scales(model)):
                # The split's forward injection acts on every pass through the shared weights, at the main
                # scale where the split's wrapper does not set one: this side would silently keep the LoRA.
                raise ValueError(
                    f"W2SD pair: the {role} model is the checkpoint under the sampler's W2SD LoRA split, without "
                    "the LoRA. Both share one set of weights and the split's LoRA acts on every pass, so this side "
                    f"cannot drop it: leave {role}_model unconnected and set the splitter's {role}_scale to 0 "
                    "instead (its pair output carries the scales)."
                )
            if model.is_clone(main) or any(model.is_clone(m) for m in found):
                raise ValueError(
                    f"W2SD pair: the {role} model is the sampler's model with other weight patches (e.g. a LoRA "
                    "loaded with LoraLoader or a W2SD LoRA split whose MODEL output is not wired to this "
                    "sampler). ComfyUI would re-patch every weight on each switch. Use the W2SD LoRA-scale "
                    "splitter and connect its MODEL output to the sampler's model input (set its main scale "
                    "to 0 for a LoRA-free regular step)."
                )
            check_same_family(main, model, role)
            if all(model is not m for m in found):
                found.append(model)
        return found

    # --- conds -----------------------------------------------------------------------------------
    def set_conds(self, positive: Any, negative: Any) -> None:
        super().set_conds(positive, negative)
        self.main_conds = (positive, negative)
        extra = {}
        for role in ROLES:
            side = self.pair.side(role)
            for kind in ("positive", "negative"):
                cond = getattr(side, kind)
                if cond is not None:
                    check_conditioning(cond, f"{role}_{kind}", positive)
                    extra[cond_key(role, kind)] = cond
        if extra:
            self.inner_set_conds(extra)

    def strong_differs_from_main(self) -> str | None:
        """What makes the strong side another denoiser than the sampler's own (None: nothing)."""
        strong = self.pair.strong
        if strong.model is not None and strong.model is not self.main_model:
            return "its model is another checkpoint or LoRA scale"
        for scales in role_scales(self.main_model):
            if scales.get("strong", scales["main"]) != scales["main"]:
                return f"its LoRA scale {scales['strong']:+g} is not the sampler's {scales['main']:+g}"
        for kind, mine in zip(("positive", "negative"), self.main_conds, strict=True):
            side = getattr(strong, kind)
            if side is not None and side is not mine:
                return f"its {kind} conditioning is its own"
        if strong.cfg is not None and strong.cfg != self.cfg:
            return f"its cfg {strong.cfg:g} is not the sampler's {self.cfg:g}"
        return None

    # --- model calls -----------------------------------------------------------------------------
    def outer_predict_noise(
        self, x: torch.Tensor, timestep: torch.Tensor, model_options: dict | None = None, seed: Any = None
    ) -> torch.Tensor:
        """CFGGuider's, with the step caches left out of a reflection's calls (without_caches)."""
        model_options = {} if model_options is None else model_options
        if model_options.get("transformer_options", {}).get(ROLE_KEY) not in ROLES:
            return super().outer_predict_noise(x, timestep, model_options, seed)
        # CFGGuider reads its wrappers from self.model_options: hand it the cache-free copy for this call.
        own_options = self.model_options
        self.model_options = without_caches(own_options)
        try:
            return super().outer_predict_noise(x, timestep, without_caches(model_options), seed)
        finally:
            self.model_options = own_options

    def predict_noise(
        self,
        x: torch.Tensor,
        timestep: torch.Tensor,
        model_options: dict | None = None,
        seed: Any = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        model_options = {} if model_options is None else model_options
        role = model_options.get("transformer_options", {}).get(ROLE_KEY)
        if role not in ROLES:
            return super().predict_noise(x, timestep, model_options, seed, **kwargs)
        side: Side = self.pair.side(role)
        model = self.inner_model
        if any(side.model is m for m in self.separate_models):
            model = side.model.model
        if role in self.side_options:
            model_options = self.side_options[role]
        conds = self.side_conds.get(role, self.conds)
        positive = conds.get(cond_key(role, "positive"), conds.get("positive"))
        negative = conds.get(cond_key(role, "negative"), conds.get("negative"))
        cfg = self.cfg if side.cfg is None else side.cfg
        if cfg == 0:
            # cfg 0 is the unconditional prediction alone: one pass instead of two.
            positive, cfg = negative, 1.0
        return comfy.samplers.sampling_function(
            model, x, timestep, negative, positive, cfg, model_options=model_options, seed=seed
        )

    # --- sampling --------------------------------------------------------------------------------
    def sample(self, noise: Any, latent_image: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
        check_latent_dimensions(self.main_model, latent_image)
        try:
            return super().sample(noise, latent_image, *args, **kwargs)
        except RuntimeError as e:
            if not is_shape_mismatch(e):
                raise
            raise ValueError(
                f"W2SD: the model could not run on its inputs ({first_line(e)}). The model, the positive and "
                "negative conditioning, the latent_image and every model and conditioning of the pair must come "
                "from one model family (e.g. an SD1.5 checkpoint with its own CLIP Text Encode outputs and an "
                "SD1.5-sized latent)."
            ) from e

    def inner_sample(
        self,
        noise,
        latent_image,
        device,
        sampler,
        sigmas,
        denoise_mask,
        callback,
        disable_pbar,
        seed,
        **kwargs,
    ):  # type: ignore[no-untyped-def]
        if not hasattr(sampler, "sampler_function"):
            raise ValueError(
                f"W2SD needs a k-diffusion style SAMPLER (KSamplerSelect, the SDE sampler nodes, ...); got {type(sampler).__name__}."
            )
        check_schedule_finite(sigmas)
        reflected = reflected_steps(self.settings.window, sigmas)
        model_sampling = self.inner_model.model_sampling
        check_inversion_fits(self.settings.inversion, model_sampling)
        if self.settings.mode in ("resample", "resample_aligned"):
            check_resampling_fits(model_sampling, sigmas)
        if self.settings.reuse_strong and (why := self.strong_differs_from_main()):
            raise ValueError(
                f"reuse_strong=True reuses the strong evaluation as the sampler's next one, so the strong side must be the "
                f"sampler's own model, conditioning and cfg; here {why}. Turn reuse_strong off for this pair (it suits a "
                "weak checkpoint, a weak prompt or a lower weak cfg against the sampler's own settings)."
            )
        if self.settings.reuse_strong and reads_its_own_unconditional(sampler.sampler_function):
            raise ValueError(reuse_with_cfg_pp(sampler_name(sampler.sampler_function)))
        # keep_sampler_history is kept where the sampler evaluates the model once per step; with the others
        # (heun, dpm_2, the SDE samplers with two evaluations...) each window step is a one-step call.
        keeps_history = self.settings.keep_history and sampler_name(sampler.sampler_function) in KEEPS_HISTORY
        if any(reflected):
            check_side_sampling(self.main_model, self.pair)
            check_reflection_patches(all_model_options(self.pair, self.model_options))
        self.side_options = {
            role: self._side_model_options(self.pair.side(role).model, role, sigmas)
            for role in ROLES
            if self.pair.side(role).model is not None and self.pair.side(role).model is not self.main_model
        }
        self.diagnostics = ReflectionDiagnostics()
        self.stop_tracker = None if self.settings.stop is None else self.settings.stop.tracker()
        inversion, iters = self.settings.core_inversion
        steps = len(sigmas) - 1

        def nfe_with(reflected_count: int) -> int:
            return planned_nfe(
                steps,
                reflected_count,
                inversion_iters=iters,
                mode=self.settings.mode,
                evals_per_step=self.settings.evals_per_step,
                reuse_strong=self.settings.reuse_strong,
            )

        total = nfe_with(sum(reflected))

        def report(i: int, x0: torch.Tensor, x: torch.Tensor, _steps: int) -> None:
            if callback is not None:
                # Once an adaptive window has ended, the bar's total shrinks to the steps reflected so far.
                stopped = None if self.stop_tracker is None else self.stop_tracker.stopped_at
                callback(i, x0, x, total if stopped is None else nfe_with(sum(reflected[: stopped + 1])))

        function = compat.named_sampler_function(
            partial(
                w2sd_sampler_function,
                inner=sampler.sampler_function,
                window=self.settings.window,
                mode=self.settings.mode,
                inversion=inversion,
                inversion_iters=iters,
                diagnostics=self.diagnostics,
                stop=self.stop_tracker,
                reuse_strong=self.settings.reuse_strong,
                noising=model_noising(model_sampling),
                keep_history=keeps_history,
            )
        )
        wrapped = comfy.samplers.KSAMPLER(function, sampler.extra_options, sampler.inpaint_options)
        self.side_conds = self._side_conds(noise, latent_image, device, denoise_mask, seed, **kwargs)
        for m in self.separate_models:
            m.pre_run()
        try:
            return super().inner_sample(
                noise,
                latent_image,
                device,
                wrapped,
                sigmas,
                denoise_mask,
                report,
                disable_pbar,
                seed,
                **kwargs,
            )
        finally:
            for m in self.separate_models:
                m.cleanup()

    def _side_conds(self, noise, latent_image, device, denoise_mask, seed, **kwargs) -> dict[str, dict]:  # type: ignore[no-untyped-def]
        """The conds as each side's own model encodes them, processed as CFGGuider.inner_sample processes
        them for the sampler's model: some families encode them with the model's layers in `extra_conds`
        (LTX-2's text connectors), so a separate checkpoint, or the sampler's model at a side's LoRA scale,
        encodes them differently. Sides that encode them as the sampler's model does use its conds."""
        out = {}
        for role in ROLES:
            model = self.pair.side(role).model
            if any(model is m for m in self.separate_models):
                base = model.model
            elif any(s.get(role, s["main"]) != s["main"] for s in role_scales(self.main_model)):
                model, base = self.main_model, self.inner_model
            else:
                continue
            latent = latent_image
            if latent is not None and torch.count_nonzero(latent) > 0:  # as the core: the empty latent stays
                latent = base.process_latent_in(latent)
            conds = {k: [c.copy() for c in v] for k, v in self.conds.items()}
            with scales_of(model, role):
                out[role] = comfy.samplers.process_conds(
                    base, noise, conds, device, latent, denoise_mask, seed, **kwargs
                )
        return out

    @staticmethod
    def _side_model_options(model: Any, role: str, sigmas: torch.Tensor) -> dict:
        """model_options for a side with a patcher of its own: its patches, wrappers and the role."""
        options = comfy.model_patcher.create_model_options_clone(model.model_options)
        to = options.setdefault("transformer_options", {})
        comfy.patcher_extension.merge_nested_dicts(
            to.setdefault("wrappers", {}), model.wrappers, copy_dict1=False
        )
        comfy.patcher_extension.merge_nested_dicts(
            to.setdefault("callbacks", {}), model.callbacks, copy_dict1=False
        )
        to["sample_sigmas"] = sigmas
        to[ROLE_KEY] = role
        return without_caches(options)


def check_latent_dimensions(model: Any, samples: Any, name: str = "latent_image") -> None:
    """An image latent for an image model, a video latent for a video model (ComfyUI adds the time axis
    of a 4-D latent for a model with 3-D latents, so that one is allowed too)."""
    if getattr(samples, "is_nested", False):
        return
    dims = getattr(model.get_model_object("latent_format"), "latent_dimensions", 2)
    allowed = {dims + 2} | ({4} if dims == 3 else set())
    if samples.ndim not in allowed:
        raise ValueError(
            f"{name} has {samples.ndim - 2} dimensions after batch and channels ({tuple(samples.shape)}) but this "
            f"model's latents have {dims}: it was made for another kind of model (e.g. a video latent for an "
            "image model). Use this model's Empty Latent node or VAE."
        )


def check_schedule_finite(sigmas: torch.Tensor) -> None:
    """Refuse a schedule with NaN or inf sigmas (ComfyUI's kl_optimal gives NaN for one step): it samples NaN."""
    if not bool(torch.isfinite(sigmas).all()):
        raise ValueError(
            f"The {len(sigmas) - 1}-step schedule has sigmas that are not finite numbers ({sigmas.tolist()}), so "
            "sampling would give NaN. ComfyUI's kl_optimal scheduler divides by steps - 1 and gives NaN for one "
            "step: use 2 or more steps (equal_budget halves them) or another scheduler."
        )


KEEPS_HISTORY = frozenset(name.removeprefix("sample_") for name in compat.ONE_EVALUATION_PER_STEP_SAMPLERS)
"""Samplers (as `sampler_name` names them) that keep_sampler_history can reflect inside their own loop."""


def sampler_name(function: Any) -> str:
    inner = getattr(function, "func", function)  # a functools.partial, e.g. gradient_estimation_cfg_pp
    return getattr(inner, "__name__", type(function).__name__).removeprefix("sample_")


def reads_its_own_unconditional(function: Any) -> bool:
    """CFG++ samplers hook the cfg step to read each of their own evaluations' unconditional prediction."""
    return "cfg_pp" in sampler_name(function) or getattr(function, "keywords", {}).get("cfg_pp") is True


def reuse_with_cfg_pp(name: str) -> str:
    return (
        f"reuse_strong=True does not work with the CFG++ sampler {name}: it reads the unconditional prediction of "
        "its own evaluation, which a reused strong evaluation does not make. Turn reuse_strong off, or pick the "
        "sampler without _cfg_pp."
    )


# torch's words for tensors whose shapes do not fit a layer: inputs made for another model family.
SHAPE_MISMATCH_WORDS = (
    "shapes cannot be multiplied",
    "size of tensor",
    "channels, but got",
    "Sizes of tensors must match",
    "shape '[",
    "must match the size",
)


def is_shape_mismatch(error: BaseException) -> bool:
    return any(words in str(error) for words in SHAPE_MISMATCH_WORDS)


def window_asks_for_reflection(window: ReflectionWindow) -> bool:
    """False for the windows a user picks on purpose to get plain sampling (0 steps, start == end)."""
    if window.kind == "steps":
        return window.reflect_steps > 0
    if window.kind == "percent" or window.noise_percent:
        return window.start < window.end
    return True


def reflected_steps(window: ReflectionWindow, sigmas: torch.Tensor) -> list[bool]:
    """The window's mask over this schedule, with errors in the node's terms."""
    steps = len(sigmas) - 1
    try:
        mask = window.mask(sigmas)
    except ValueError as e:
        if window.kind != "steps":
            raise
        raise ValueError(
            f"reflect_steps={window.reflect_steps} is outside this {steps}-step schedule: {e}. Use -1 for every step that can reflect."
        ) from None
    # A stage (W2SD KSampler (Advanced)) whose steps lie outside the window reflects nothing on purpose.
    if not any(mask) and not window.schedule_steps and window_asks_for_reflection(window):
        raise ValueError(
            f"The reflection window ({window.describe()}) selects no step of this {steps}-step schedule, so W2SD would do nothing. "
            "Widen the window or use more steps (the step into sigma 0 never reflects); reflect_steps=0 is plain sampling on purpose."
        )
    return mask


def check_inversion_fits(inversion: str, model_sampling: Any) -> None:
    if inversion == "reference" and (
        isinstance(model_sampling, comfy.model_sampling.CONST)
        or not isinstance(model_sampling, comfy.model_sampling.EPS)
    ):
        raise ValueError(
            f"inversion='reference' reproduces the official code's EPS inversion and needs an EPS/V-prediction model (SD1.5, SDXL); "
            f"this model samples with {type(model_sampling).__name__}. Use 'explicit' or 'fixed_point'."
        )


def model_noising(model_sampling: Any) -> Noising:
    """How the sampler's latent mixes data and noise, read off the model's own `noise_scaling` (ComfyUI
    makes the first latent with it): `signal(sigma)` is its weight on the clean latent, `noise(sigma)` on eps.
    EPS, V-prediction, EDM and Cosmos give `x0 + sigma * eps`, flow models (CONST) `(1 - sigma) x0 + sigma * eps`.
    """

    def mix(sigma: Any, noise: float, latent: float) -> torch.Tensor:
        sigma = torch.as_tensor(sigma)
        return model_sampling.noise_scaling(
            sigma, torch.full_like(sigma, noise), torch.full_like(sigma, latent)
        )

    return Noising(signal=lambda sigma: mix(sigma, 0.0, 1.0), noise=lambda sigma: mix(sigma, 1.0, 0.0))


def check_resampling_fits(model_sampling: Any, sigmas: torch.Tensor) -> None:
    """Re-Sampling needs a latent `a(sigma) x0 + b(sigma) eps` with noise in it (b > 0) at the top sigma."""
    noising, sigma = model_noising(model_sampling), sigmas[0]
    eps, x0 = torch.tensor([1.5, -0.5], device=sigma.device), torch.tensor([-2.0, 3.0], device=sigma.device)
    mixed = model_sampling.noise_scaling(sigma, eps.clone(), x0)
    linear = torch.allclose(mixed, noising.signal(sigma) * x0 + noising.noise(sigma) * eps)
    if not linear or float(noising.noise(sigma)) <= 0:
        # The class that noises (CONST, IMG_TO_IMG_FLOW, ...), not ComfyUI's combined ModelSampling class.
        kind = next(c.__name__ for c in type(model_sampling).__mro__ if "noise_scaling" in vars(c))
        raise ValueError(
            f"Re-Sampling re-noises the latent the way the model noises it, a(sigma) * latent + b(sigma) * noise; this model "
            f"samples with {kind}, whose noise_scaling is not such a mix with noise in it. Use mode W2SD."
        )


def cond_key(role: str, kind: str) -> str:
    return f"w2sd_{role}_{kind}"


def check_conditioning(cond: Any, name: str, reference: Any = None) -> None:
    """Side conditioning must be non-empty and come from the same text encoder as the sampler's."""
    if (
        not isinstance(cond, list)
        or len(cond) == 0
        or not all(isinstance(c, (list, tuple)) and len(c) == 2 for c in cond)
    ):
        raise ValueError(
            f"W2SD pair: {name} is empty or not CONDITIONING; connect a CLIP Text Encode output or leave it unconnected."
        )
    if reference:
        mine, theirs = cond[0][0].shape[-1], reference[0][0].shape[-1]
        if mine != theirs:
            raise ValueError(
                f"W2SD pair: {name} has {mine}-wide text embeddings but the sampler's positive has {theirs}: "
                "it was encoded with another model family's CLIP. Encode both with the same checkpoint's CLIP."
            )


def with_role(extra_args: dict, role: str) -> dict:
    """extra_args whose model_options carry the role; shallow copies, nothing shared is changed."""
    options = dict(extra_args.get("model_options", {}))
    options["transformer_options"] = {**options.get("transformer_options", {}), ROLE_KEY: role}
    return {**extra_args, "model_options": options}


def w2sd_sampler_function(
    model,
    x,
    sigmas,
    extra_args=None,
    callback=None,
    disable=None,
    *,
    inner,
    window,
    mode,
    inversion,
    inversion_iters,
    diagnostics,
    stop=None,
    reuse_strong=False,
    noising=VARIANCE_EXPLODING,
    keep_history=False,
    **options,
):  # type: ignore[no-untyped-def]
    """A k-diffusion sampler function: `inner` with W2SD reflections in the window."""
    extra_args = {} if extra_args is None else extra_args
    strong_args, weak_args = with_role(extra_args, "strong"), with_role(extra_args, "weak")

    def strong(v: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return model(v, sigma, **strong_args)

    def weak(v: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return model(v, sigma, **weak_args)

    name = getattr(inner, "__name__", "")
    # UniPC (and SA-Solver before 0.29) takes no step on a one-step schedule: with a non-empty window its
    # one-step calls take the first-order step instead (DDIM, an Euler step in sigma space; also UniPC's
    # own last step). Runs of two or more steps outside the window stay the sampler's.
    single_step = first_order_step if name in compat.NO_LONE_STEP_SAMPLERS else None
    on_cpu = BROWNIAN_TREE_SAMPLERS.get(name)
    if on_cpu is not None and options.get("noise_sampler") is None and len(sigmas) > 1:
        positive = sigmas[sigmas > 0]
        options["noise_sampler"] = comfy.k_diffusion.sampling.BrownianTreeNoiseSampler(
            x, positive.min(), sigmas.max(), seed=extra_args.get("seed"), cpu=on_cpu
        )
    return sample_with_reflection(
        inner,
        model,
        x,
        sigmas,
        extra_args,
        callback,
        disable,
        strong=strong,
        weak=weak,
        window=window,
        mode=mode,
        inversion=inversion,
        inversion_iters=inversion_iters,
        seed=extra_args.get("seed"),
        diagnostics=diagnostics,
        single_step=single_step,
        stop=stop,
        reuse_strong=reuse_strong,
        noising=noising,
        keep_history=keep_history,
        **options,
    )
