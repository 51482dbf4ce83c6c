"""W2SD KSampler (a drop-in for KSampler) and the W2SD guider node for SamplerCustomAdvanced."""

from __future__ import annotations

from typing import Any

import comfy.model_management
import comfy.sample
import comfy.samplers
import comfy.utils
import latent_preview
import torch

from . import compat
from .guider import W2SDGuider
from .pair import PAIR_TYPE, W2SDPair
from .plot import diagnostics_image
from .reflection_inputs import (
    adaptive_inputs,
    reflection_inputs,
    settings_from_inputs,
    validate_reflection_inputs,
)

PAIR_TOOLTIP = "What differs between the strong and the weak side: from Weak/Strong Model Pair, LoRA-scale splitter or CFG-gap config (stackable)."


def check_latent(model: Any, latent: dict, name: str = "latent_image") -> torch.Tensor:
    samples = latent["samples"]
    if getattr(samples, "is_nested", False):
        return samples
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
        settings, steps = settings_from_inputs(steps, sampler_name, **reflection)
        samples = check_latent(model, latent_image)
        samples = compat.fix_empty_latent(model, latent_image, samples)
        noise = comfy.sample.prepare_noise(samples, seed, latent_image.get("batch_index"))
        sigmas = comfy.samplers.KSampler(
            model,
            steps=steps,
            device=model.load_device,
            sampler=sampler_name,
            scheduler=scheduler,
            denoise=denoise,
            model_options=model.model_options,
        ).sigmas
        guider = W2SDGuider(model, pair, settings)
        guider.set_conds(positive, negative)
        guider.set_cfg(cfg)
        out_samples = run_guider(
            guider,
            noise,
            samples,
            comfy.samplers.sampler_object(sampler_name),
            sigmas,
            latent_image.get("noise_mask"),
            seed,
        )
        return (
            compat.output_latent(latent_image, out_samples),
            diagnostics_image(guider.diagnostics, f"W2SD {pair.describe()}", guider.stop_tracker),
        )


def run_guider(guider: W2SDGuider, noise, samples, sampler, sigmas, noise_mask, seed):  # type: ignore[no-untyped-def]
    callback = latent_preview.prepare_callback(guider.model_patcher, max(len(sigmas) - 1, 1))
    disable_pbar = not comfy.utils.PROGRESS_BAR_ENABLED
    out = guider.sample(
        noise,
        samples,
        sampler,
        sigmas,
        denoise_mask=noise_mask,
        callback=callback,
        disable_pbar=disable_pbar,
        seed=seed,
    )
    return out.to(comfy.model_management.intermediate_device())


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
        if reflection.get("equal_budget"):
            raise ValueError(
                "equal_budget=True needs the step count, which a GUIDER does not set: use it on the W2SD KSampler, or halve your SIGMAS and reflect their first quarter."
            )
        # The schedule is only known when sampling; the window is checked against the SIGMAS then.
        settings, _ = settings_from_inputs(None, None, **reflection)
        guider = W2SDGuider(model, pair, settings)
        guider.set_conds(positive, negative)
        guider.set_cfg(cfg)
        return (guider,)
