"""W2SD KSampler and W2SD KSampler (Advanced) (drop-ins for the stock two) and the W2SD guider node."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import comfy.sample
import comfy.samplers
import comfy.utils
import latent_preview
import torch

from . import compat
from .guider import W2SDGuider, check_latent_dimensions, reflected_steps
from .pair import PAIR_TYPE, W2SDPair
from .plot import diagnostics_image
from .reflection_inputs import (
    adaptive_inputs,
    percent_to_sigma_of,
    reflection_inputs,
    settings_from_inputs,
    validate_reflection_inputs,
)

PAIR_TOOLTIP = "What differs between the strong and the weak side: from Weak/Strong Model Pair, LoRA-scale splitter or CFG-gap config (stackable)."


def check_latent(model: Any, latent: dict, name: str = "latent_image") -> torch.Tensor:
    samples = latent["samples"]
    if getattr(samples, "is_nested", False):
        return samples
    check_latent_dimensions(model, samples, name)
    channels = model.get_model_object("latent_format").latent_channels
    if samples.shape[1] != channels and torch.count_nonzero(samples) > 0:
        raise ValueError(
            f"{name} has {samples.shape[1]} channels but this model's latents have {channels}: "
            "it was made for another model family (encode it with this model's VAE)."
        )
    return samples


class W2SDKSampler:
    """KSampler with Weak-to-Strong Diffusion reflections (arXiv 2502.00473)."""

    SEARCH_ALIASES = ["w2sd", "weak to strong", "z-sampling", "zigzag", "reflection sampler"]

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "model": (
                    "MODEL",
                    {
                        "tooltip": "The model for the regular sampling steps (paper: M^s; official code: LoRA at 0.8)."
                    },
                ),
                "seed": (
                    "INT",
                    {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "control_after_generate": True},
                ),
                "steps": (
                    "INT",
                    {
                        "default": 20,
                        "min": 1,
                        "max": 10000,
                        "tooltip": "Sampling steps T. W2SD costs T + 2 x reflected steps model evaluations.",
                    },
                ),
                "cfg": (
                    "FLOAT",
                    {
                        "default": 5.5,
                        "min": 0.0,
                        "max": 100.0,
                        "step": 0.1,
                        "round": 0.01,
                        "tooltip": "CFG of the regular steps (paper: 5.5). Sides without a cfg of their own use it too.",
                    },
                ),
                "sampler_name": (comfy.samplers.KSampler.SAMPLERS,),
                "scheduler": (comfy.samplers.KSampler.SCHEDULERS,),
                "positive": ("CONDITIONING",),
                "negative": ("CONDITIONING",),
                "latent_image": ("LATENT",),
                "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}),
                "pair": (PAIR_TYPE, {"tooltip": PAIR_TOOLTIP}),
                **reflection_inputs(),
            },
            "optional": adaptive_inputs(),
        }

    RETURN_TYPES = ("LATENT", "IMAGE")
    RETURN_NAMES = ("LATENT", "reflection_plot")
    OUTPUT_TOOLTIPS = (
        "The sampled latent.",
        "Per-step reflection size |x~ - x| / |x| and the cosine between successive reflection directions: flat zero means the pair does nothing.",
    )
    FUNCTION = "sample"
    CATEGORY = "sampling/W2SD"
    DESCRIPTION = "KSampler with Weak-to-Strong Diffusion reflections: in the window, each step is preceded by a strong denoise and a weak inversion that move the latent along the weak-to-strong difference."

    @classmethod
    def VALIDATE_INPUTS(cls, input_types: dict | None = None, **values: Any) -> bool | str:
        return validate_reflection_inputs(cls.INPUT_TYPES(), input_types, **values)

    def sample(
        self,
        model,
        seed,
        steps,
        cfg,
        sampler_name,
        scheduler,
        positive,
        negative,
        latent_image,
        denoise,
        pair: W2SDPair,
        **reflection,
    ):  # type: ignore[no-untyped-def]
        settings, steps = settings_from_inputs(
            steps, sampler_name, percent_to_sigma=percent_to_sigma_of(model), **reflection
        )
        samples = check_latent(model, latent_image)
        samples = compat.fix_empty_latent(model, latent_image, samples)
        noise = comfy.sample.prepare_noise(samples, seed, latent_image.get("batch_index"))
        sigmas = schedule(model, steps, sampler_name, scheduler, denoise)
        guider = W2SDGuider(model, pair, settings)
        return run_sampler(
            guider,
            positive,
            negative,
            cfg,
            noise,
            samples,
            latent_image,
            sampler_name,
            sigmas,
            seed,
            title=f"W2SD {pair.describe()}",
        )


STAGE_WINDOW = (
    "The reflection window counts in the whole `steps` schedule, not in this stage: 'first half' is the same "
    "steps whether one node runs 0..steps or two nodes run 0..k and k..steps; this node reflects the "
    "window's steps in [start_at_step, end_at_step). A window in sigma reads each step's own sigma: the same "
    "noise levels in either stage."
)


class W2SDKSamplerAdvanced:
    """KSamplerAdvanced with W2SD reflections: one stage of a schedule (Wan 2.2 experts, base + refiner)."""

    SEARCH_ALIASES = ["w2sd advanced", "w2sd ksampler advanced", "w2sd two stage", "w2sd wan 2.2 experts"]

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        reflection = reflection_inputs()
        for name in ("start_percent", "end_percent", "reflect_steps"):
            kind, options = reflection[name]
            reflection[name] = (kind, {**options, "tooltip": f"{options['tooltip']} {STAGE_WINDOW}"})
        kind, options = reflection["equal_budget"]
        reflection["equal_budget"] = (
            kind,
            {
                **options,
                "tooltip": "Refused here: it halves `steps`, which would move start_at_step / end_at_step onto other sigmas. Use the W2SD KSampler.",
            },
        )
        return {
            "required": {
                "model": (
                    "MODEL",
                    {
                        "tooltip": "The model for this stage's regular steps (e.g. Wan 2.2's high-noise expert for the first stage)."
                    },
                ),
                "add_noise": (["enable", "disable"], {"advanced": True}),
                "noise_seed": (
                    "INT",
                    {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "control_after_generate": True},
                ),
                "steps": (
                    "INT",
                    {
                        "default": 20,
                        "min": 1,
                        "max": 10000,
                        "tooltip": "Steps of the whole schedule, as on KSamplerAdvanced; the window counts in these.",
                    },
                ),
                "cfg": ("FLOAT", {"default": 5.5, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01}),
                "sampler_name": (comfy.samplers.KSampler.SAMPLERS,),
                "scheduler": (comfy.samplers.KSampler.SCHEDULERS,),
                "positive": ("CONDITIONING",),
                "negative": ("CONDITIONING",),
                "latent_image": ("LATENT",),
                "start_at_step": ("INT", {"default": 0, "min": 0, "max": 10000, "advanced": True}),
                "end_at_step": ("INT", {"default": 10000, "min": 0, "max": 10000, "advanced": True}),
                "return_with_leftover_noise": (["disable", "enable"], {"advanced": True}),
                "pair": (PAIR_TYPE, {"tooltip": PAIR_TOOLTIP}),
                **reflection,
            },
            "optional": adaptive_inputs(),
        }

    RETURN_TYPES = ("LATENT", "IMAGE")
    RETURN_NAMES = ("LATENT", "reflection_plot")
    OUTPUT_TOOLTIPS = W2SDKSampler.OUTPUT_TOOLTIPS
    FUNCTION = "sample"
    CATEGORY = "sampling/W2SD"
    DESCRIPTION = (
        "KSamplerAdvanced with Weak-to-Strong Diffusion reflections, for two-stage sampling (Wan 2.2's two "
        "experts, SDXL base + refiner, a second pass). " + STAGE_WINDOW + " A stage that returns leftover "
        "noise can reflect its last step; the step into sigma 0 never reflects. With an empty window it is "
        "KSamplerAdvanced bit for bit."
    )

    @classmethod
    def VALIDATE_INPUTS(cls, input_types: dict | None = None, **values: Any) -> bool | str:
        return validate_reflection_inputs(cls.INPUT_TYPES(), input_types, **values)

    def sample(
        self,
        model,
        add_noise,
        noise_seed,
        steps,
        cfg,
        sampler_name,
        scheduler,
        positive,
        negative,
        latent_image,
        start_at_step,
        end_at_step,
        return_with_leftover_noise,
        pair: W2SDPair,
        **reflection,
    ):  # type: ignore[no-untyped-def]
        if reflection.get("equal_budget"):
            raise ValueError(
                "equal_budget=True is not available on W2SD KSampler (Advanced): it halves `steps`, which would move "
                f"start_at_step={start_at_step} / end_at_step={end_at_step} onto other sigmas. Turn it off and set the "
                "window (e.g. half the steps, reflect_steps a quarter), or use the W2SD KSampler."
            )
        settings, steps = settings_from_inputs(
            steps, sampler_name, percent_to_sigma=percent_to_sigma_of(model), **reflection
        )
        samples = check_latent(model, latent_image)
        samples = compat.fix_empty_latent(model, latent_image, samples)
        # From here on as common_ksampler and comfy.samplers.KSampler.sample do it, so an empty window is
        # KSamplerAdvanced bit for bit.
        if add_noise == "disable":
            noise = torch.zeros(samples.size(), dtype=samples.dtype, layout=samples.layout, device="cpu")
        else:
            noise = comfy.sample.prepare_noise(samples, noise_seed, latent_image.get("batch_index"))
        sigmas = schedule(model, steps, sampler_name, scheduler, 1.0)
        # The window's errors (reflect_steps too large, a window that selects nothing) in whole-schedule terms.
        reflected_steps(settings.window, sigmas)
        full_steps = len(sigmas) - 1
        if end_at_step < full_steps:
            sigmas = sigmas[: end_at_step + 1].clone()
            if return_with_leftover_noise != "enable":
                sigmas[-1] = 0
        title = (
            f"W2SD {pair.describe()}, steps {start_at_step}..{min(end_at_step, full_steps)} of {full_steps}"
        )
        if start_at_step >= len(sigmas) - 1:
            # Stock returns the latent unchanged when the stage holds no step.
            out = compat.sampled_output(samples)
            return (compat.output_latent(latent_image, out), diagnostics_image(None, title))
        guider = W2SDGuider(
            model, pair, replace(settings, window=settings.window.stage(start_at_step, full_steps))
        )
        return run_sampler(
            guider,
            positive,
            negative,
            cfg,
            noise,
            samples,
            latent_image,
            sampler_name,
            sigmas[start_at_step:],
            noise_seed,
            title=title,
            first_step=start_at_step,
        )


def schedule(model, steps, sampler_name, scheduler, denoise):  # type: ignore[no-untyped-def]
    """The sigmas the stock KSampler would sample (comfy.samplers.KSampler, as common_ksampler makes it)."""
    return comfy.samplers.KSampler(
        model,
        steps=steps,
        device=model.load_device,
        sampler=sampler_name,
        scheduler=scheduler,
        denoise=denoise,
        model_options=model.model_options,
    ).sigmas


def run_sampler(
    guider: W2SDGuider,
    positive,
    negative,
    cfg,
    noise,
    samples,
    latent_image,
    sampler_name,
    sigmas,
    seed,
    title,
    first_step=0,
):  # type: ignore[no-untyped-def]
    """What both W2SD KSamplers do once the schedule is known: sample, and return (LATENT, plot)."""
    guider.set_conds(positive, negative)
    guider.set_cfg(cfg)
    out = guider.sample(
        noise,
        samples,
        comfy.samplers.sampler_object(sampler_name),
        sigmas,
        denoise_mask=latent_image.get("noise_mask"),
        callback=latent_preview.prepare_callback(guider.model_patcher, max(len(sigmas) - 1, 1)),
        disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED,
        seed=seed,
    )
    return (
        compat.output_latent(latent_image, compat.sampled_output(out)),
        diagnostics_image(guider.diagnostics, title, guider.stop_tracker, first_step),
    )


class W2SDGuiderNode:
    """A GUIDER for SamplerCustomAdvanced: W2SD reflections with any SAMPLER and SIGMAS."""

    SEARCH_ALIASES = ["w2sd guider", "weak to strong guider", "z-sampling guider"]

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "model": ("MODEL",),
                "positive": ("CONDITIONING",),
                "negative": ("CONDITIONING",),
                "cfg": ("FLOAT", {"default": 5.5, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01}),
                "pair": (PAIR_TYPE, {"tooltip": PAIR_TOOLTIP}),
                **reflection_inputs(),
            },
            "optional": adaptive_inputs(),
        }

    RETURN_TYPES = ("GUIDER",)
    FUNCTION = "get_guider"
    CATEGORY = "sampling/W2SD"
    DESCRIPTION = "W2SD as a GUIDER for SamplerCustomAdvanced: works with KSamplerSelect, the SDE samplers, any SIGMAS node and split-sigma two-stage graphs. The window is taken over the SIGMAS it is given."

    @classmethod
    def VALIDATE_INPUTS(cls, input_types: dict | None = None, **values: Any) -> bool | str:
        return validate_reflection_inputs(cls.INPUT_TYPES(), input_types, **values)

    def get_guider(self, model, positive, negative, cfg, pair: W2SDPair, **reflection):  # type: ignore[no-untyped-def]
        # The schedule is only known when sampling; the window is checked against the SIGMAS then.
        settings, _ = settings_from_inputs(
            None, None, percent_to_sigma=percent_to_sigma_of(model), **reflection
        )
        guider = W2SDGuider(model, pair, settings)
        guider.set_conds(positive, negative)
        guider.set_cfg(cfg)
        return (guider,)
