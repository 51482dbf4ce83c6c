"""Model patches stacked between loader and sampler that W2SD's reflections cannot honour: refused by name;
step caches are kept off the reflection's calls.

A reflection evaluates the strong side at sigma_i and inverts with the weak side, so the sigma of
successive model calls goes down and back up, and two sides share one sampling run. Patches that keep
state across calls, or reuse an earlier call's output, see that sequence; patches on the model's
noise schedule must agree between the sides. What works and what is refused: docs/COMPATIBILITY.md.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

import torch

from .pair import ROLES, W2SDPair

# Wrapper keys of the core step caches (EasyCache, LazyCache): they skip a model call by adding the
# previous call's output change to its input.
CACHE_WRAPPER_KEYS = ("easycache", "lazycache")


def sampling_settings(model: Any) -> str:
    """A model's noise schedule in words: its model_sampling classes, shift, multiplier and sigma range."""
    sampling = model.get_model_object("model_sampling")
    kinds = [c.__name__ for c in type(sampling).__mro__ if c.__module__ == "comfy.model_sampling"]
    words = ["+".join(kinds) or type(sampling).__name__]
    for name in ("shift", "multiplier"):
        if hasattr(sampling, name):
            words.append(f"{name} {float(getattr(sampling, name)):g}")
    words.append(f"sigmas {float(sampling.sigma_min):.4g}..{float(sampling.sigma_max):.4g}")
    return ", ".join(words)


def prediction_type(model: Any) -> str:
    """What the network predicts and how sigma mixes noise in (EPS, V_PREDICTION, CONST, COSMOS_RFLOW...)."""
    sampling = model.get_model_object("model_sampling")
    for c in type(sampling).__mro__:
        if c.__module__ == "comfy.model_sampling" and "calculate_denoised" in c.__dict__:
            return c.__name__
    return type(sampling).__name__


def same_sampling(a: Any, b: Any) -> bool:
    sa, sb = a.get_model_object("model_sampling"), b.get_model_object("model_sampling")
    if sa is sb:
        return True
    if sampling_settings(a) != sampling_settings(b):
        return False
    ta, tb = getattr(sa, "sigmas", None), getattr(sb, "sigmas", None)
    return ta is None or tb is None or (ta.shape == tb.shape and torch.equal(ta.cpu(), tb.cpu()))


def check_side_sampling(main: Any, pair: W2SDPair) -> None:
    """Every side model must sample on the main model's noise schedule (ModelSampling* nodes)."""
    for role in ROLES:
        side = pair.side(role).model
        if side is None or side is main or same_sampling(main, side):
            continue
        families = type(side.model.model_config).__name__, type(main.model.model_config).__name__
        if families[0] != families[1]:
            raise ValueError(
                f"W2SD pair: the {role} model is {families[0]} and the sampler's model {families[1]}: they sample on "
                f"other noise schedules ({sampling_settings(side)} against {sampling_settings(main)}). Strong, weak "
                "and main must be the same model family (a fine-tune of the same base)."
            )
        raise ValueError(
            f"W2SD pair: the {role} model samples with {sampling_settings(side)}, but the sampler's model with "
            f"{sampling_settings(main)}. A ModelSampling node (ModelSamplingSD3, ModelSamplingAuraFlow, "
            "ModelSamplingFlux, ModelSamplingDiscrete, ModelSamplingLTXV) with other settings on one side makes "
            "the sides read the same sigma as different timesteps. Apply the same ModelSampling node and "
            f"settings to the sampler's model and to {role}_model (or put it before the pair's models split)."
        )


def apg_momentum(function: Any) -> float:
    """The momentum of a core APG pre-CFG function (0 for anything else)."""
    if not getattr(function, "__qualname__", "").startswith("APG."):
        return 0.0
    try:
        return float(inspect.getclosurevars(function).nonlocals.get("momentum", 0.0))
    except (TypeError, ValueError):
        return 0.0


def check_reflection_patches(options: Iterable[dict]) -> None:
    """Refuse the patches that reflections would corrupt, found in any side's model_options."""
    for model_options in options:
        for function in model_options.get("sampler_pre_cfg_function", []):
            momentum = apg_momentum(function)
            if momentum != 0:
                raise ValueError(
                    f"Adaptive Projected Guidance (APG) with momentum={momentum:g} cannot run inside a W2SD "
                    "reflection window: its running average spans every model call and resets whenever sigma "
                    "rises, which each W2SD inversion does, so the regular steps would lose their momentum and the "
                    "strong and weak sides would share it. Set APG's momentum to 0 (its projection and norm "
                    "threshold work with W2SD) or set reflect_steps=0."
                )
        transformer_options = model_options.get("transformer_options", {})
        patches = transformer_options.get("patches", {})
        if any(type(p).__name__ == "KV_Attn_Input" for p in patches.get("attn1_patch", [])):
            raise ValueError(
                "FluxKVCache cannot run inside a W2SD reflection window: it computes the reference image's "
                "keys and values at the first model call and reuses them on every later call, also on the "
                "other side's. Remove the Flux KV Cache node from this model's path, or set reflect_steps=0."
            )


def all_model_options(pair: W2SDPair, main_options: dict) -> list[dict]:
    """The main model_options and those of every side model of its own."""
    return [main_options] + [
        pair.side(role).model.model_options for role in ROLES if pair.side(role).model is not None
    ]


def without_caches(model_options: dict) -> dict:
    """model_options whose wrappers leave out the step caches (shallow copies; nothing shared is changed).

    A reflection call skipped by a cache would be served the previous call's output change, computed for
    the other side or another sigma; without the cache it runs, and the cache's state sees only the
    regular steps, in stock's order."""
    transformer_options = model_options.get("transformer_options", {})
    wrappers = transformer_options.get("wrappers", {})
    if not any(key in by_key for by_key in wrappers.values() for key in CACHE_WRAPPER_KEYS):
        return model_options
    kept = {
        kind: {key: fns for key, fns in by_key.items() if key not in CACHE_WRAPPER_KEYS}
        for kind, by_key in wrappers.items()
    }
    return {**model_options, "transformer_options": {**transformer_options, "wrappers": kept}}
