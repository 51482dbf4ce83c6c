"""W2SD nodes through a real ComfyUI server on the tiny checkpoints: every pair type, both model families,
a spread of samplers and schedulers. W2SD must differ from stock where it reflects and equal stock where
it must not (empty window)."""

from __future__ import annotations

import numpy as np
import pytest
from fixtures.checkpoints import SD3_MINI, SD15_MINI, SD15_MINI_LORA
from graphs import (
    PAIRS,
    add_cfg_gap,
    add_lora_split,
    base_graph,
    guider_graph,
    pair_graph,
    stock_custom_graph,
    w2sd_graph,
)

NO_REFLECTION = {"window": "steps", "reflect_steps": 0}
REFLECT = {"window": "steps", "reflect_steps": -1}


def differ(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


@pytest.mark.parametrize("kind", list(PAIRS))
def test_every_pair_type_acts_and_reduces_to_stock(server, kind):
    seed = 100 + list(PAIRS).index(kind)
    stock_graph = base_graph(SD15_MINI, seed=seed)
    if kind in ("lora", "cumulative"):  # stock reference: LoraLoader at the main scale
        stock_graph["21"] = {
            "class_type": "LoraLoader",
            "inputs": {
                "model": ["4", 0],
                "clip": ["4", 1],
                "lora_name": SD15_MINI_LORA,
                "strength_model": 0.8,
                "strength_clip": 0.8,
            },
        }
        stock_graph["3"]["inputs"]["model"] = ["21", 0]
        for node in ("6", "7"):
            stock_graph[node]["inputs"]["clip"] = ["21", 1]
    stock = server.run(stock_graph).image
    reflected = server.run(pair_graph(kind, seed, **REFLECT)).image
    plain = server.run(pair_graph(kind, seed, **NO_REFLECTION)).image
    if kind in ("lora", "cumulative"):
        # Forward-injected LoRA vs patched weights: equal up to float rounding (tests/nodes pins it).
        assert differ(plain, stock) < 0.5
    else:
        assert np.array_equal(plain, stock), "an empty reflection window must be stock KSampler exactly"
    assert differ(reflected, stock) > 1.0, f"{kind}: W2SD changed nothing"


def test_lora_split_then_core_bypass_lora(server):
    """Split -> LoraLoaderBypass (core bypass-mode LoRA, ComfyUI >= 0.11) -> W2SD KSampler: it runs and
    reflects; with an empty window it is the stock LoraLoader at the summed strength (0.8 + 0.5)."""
    if "LoraLoaderBypassModelOnly" not in server.object_info():
        pytest.skip("this ComfyUI has no LoraLoaderBypass (core bypass-mode LoRA, >= 0.11)")
    g = base_graph(SD15_MINI, seed=31)
    model, pair = add_lora_split(g, SD15_MINI_LORA)
    g["25"] = {
        "class_type": "LoraLoaderBypassModelOnly",
        "inputs": {"model": model, "lora_name": SD15_MINI_LORA, "strength_model": 0.5},
    }
    stock_graph = base_graph(SD15_MINI, seed=31)
    stock_graph["26"] = {
        "class_type": "LoraLoader",
        "inputs": {
            "model": ["4", 0],
            "clip": ["4", 1],
            "lora_name": SD15_MINI_LORA,
            "strength_model": 1.3,
            "strength_clip": 0.8,
        },
    }
    stock_graph["3"]["inputs"]["model"] = ["26", 0]
    for node in ("6", "7"):
        stock_graph[node]["inputs"]["clip"] = ["26", 1]
    stock = server.run(stock_graph).image
    plain = server.run(w2sd_graph(g, pair, model=["25", 0], **NO_REFLECTION)).image
    reflected = server.run(w2sd_graph(g, pair, model=["25", 0], **REFLECT)).image
    assert differ(plain, stock) < 0.5
    assert differ(reflected, plain) > 1.0


@pytest.mark.parametrize(
    "sampler,scheduler",
    [
        ("euler", "karras"),
        ("euler_ancestral", "normal"),
        ("dpmpp_2m", "simple"),
        ("heun", "exponential"),
        ("dpmpp_2m_sde", "karras"),
        ("uni_pc", "sgm_uniform"),
        ("ddim", "ddim_uniform"),
        ("lcm", "beta"),
    ],
)
def test_samplers_and_schedulers(server, sampler, scheduler):
    g = base_graph(SD15_MINI, seed=7, sampler=sampler, scheduler=scheduler)
    pair = add_cfg_gap(g)
    stock = server.run(base_graph(SD15_MINI, seed=7, sampler=sampler, scheduler=scheduler)).image
    assert np.array_equal(server.run(w2sd_graph(g, pair, **NO_REFLECTION)).image, stock)
    assert differ(server.run(w2sd_graph(g, pair, **REFLECT)).image, stock) > 1.0


def test_flow_model_sd3(server):
    stock = server.run(base_graph(SD3_MINI, seed=3, cfg=4.0)).image
    g = base_graph(SD3_MINI, seed=3, cfg=4.0)
    pair = add_cfg_gap(g, strong_cfg=4.0, weak_cfg=1.0)
    assert np.array_equal(server.run(w2sd_graph(g, pair, **NO_REFLECTION)).image, stock)
    reflected = server.run(w2sd_graph(g, pair, **REFLECT)).image
    assert differ(reflected, stock) > 1.0
    assert np.isfinite(reflected).all()


def test_v_prediction(server):
    g = base_graph(SD15_MINI, seed=4)
    g["40"] = {
        "class_type": "ModelSamplingDiscrete",
        "inputs": {"model": ["4", 0], "sampling": "v_prediction", "zsnr": False},
    }
    g["3"]["inputs"]["model"] = ["40", 0]
    stock = server.run(g).image
    pair = add_cfg_gap(g)
    assert np.array_equal(server.run(w2sd_graph(g, pair, **NO_REFLECTION)).image, stock)
    assert differ(server.run(w2sd_graph(g, pair, **REFLECT)).image, stock) > 1.0


def test_guider_with_sampler_custom_advanced(server):
    g = base_graph(SD15_MINI, seed=9)
    pair = add_cfg_gap(g)
    stock = server.run(stock_custom_graph(base_graph(SD15_MINI, seed=9), sampler="dpmpp_2m_sde")).image
    same = server.run(guider_graph(g, pair, sampler="dpmpp_2m_sde", **NO_REFLECTION)).image
    assert np.array_equal(same, stock)
    assert differ(server.run(guider_graph(g, pair, sampler="dpmpp_2m_sde", **REFLECT)).image, stock) > 1.0


def test_guider_two_stage_split_sigmas(server):
    """SplitSigmas: W2SD guider on the high-noise part, stock guider on the rest."""
    g = guider_graph(base_graph(SD15_MINI, seed=11, steps=8), add_cfg_gap(base_graph(SD15_MINI)), **REFLECT)
    g["20"] = {"class_type": "W2SDCFGGap", "inputs": {"strong_cfg": 5.5, "weak_cfg": 0.0}}
    g["14"] = {"class_type": "SplitSigmas", "inputs": {"sigmas": ["12", 0], "step": 4}}
    g["3"]["inputs"]["sigmas"] = ["14", 0]
    g["15"] = {
        "class_type": "CFGGuider",
        "inputs": {"model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "cfg": 5.5},
    }
    g["16"] = {"class_type": "DisableNoise", "inputs": {}}
    g["17"] = {
        "class_type": "SamplerCustomAdvanced",
        "inputs": {
            "noise": ["16", 0],
            "guider": ["15", 0],
            "sampler": ["11", 0],
            "sigmas": ["14", 1],
            "latent_image": ["3", 0],
        },
    }
    g["8"]["inputs"]["samples"] = ["17", 0]
    two_stage = server.run(g).image
    stock = server.run(stock_custom_graph(base_graph(SD15_MINI, seed=11, steps=8))).image
    assert differ(two_stage, stock) > 1.0


def test_img2img_inpaint_and_batch(server):
    g = base_graph(SD15_MINI, seed=12, batch=2)
    g["50"] = {
        "class_type": "EmptyImage",
        "inputs": {"width": 64, "height": 64, "batch_size": 2, "color": 0x336699},
    }
    g["51"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["50", 0], "vae": ["4", 2]}}
    g["52"] = {"class_type": "SolidMask", "inputs": {"value": 0.0, "width": 64, "height": 64}}
    g["53"] = {
        "class_type": "FeatherMask",
        "inputs": {"mask": ["52", 0], "left": 0, "top": 0, "right": 32, "bottom": 0},
    }
    g["54"] = {"class_type": "InvertMask", "inputs": {"mask": ["52", 0]}}
    g["55"] = {"class_type": "SetLatentNoiseMask", "inputs": {"samples": ["51", 0], "mask": ["53", 0]}}
    g["3"]["inputs"]["latent_image"] = ["51", 0]
    g["3"]["inputs"]["denoise"] = 0.6
    stock = server.run(g)
    images = stock.images["9"]
    assert len(images) == 2
    pair = add_cfg_gap(g)
    plain = server.run(w2sd_graph(g, pair, **NO_REFLECTION)).images["9"]
    assert all(np.array_equal(a, b) for a, b in zip(plain, images, strict=True))
    reflected = server.run(w2sd_graph(g, pair, **REFLECT)).images["9"]
    assert all(differ(a, b) > 1.0 for a, b in zip(reflected, images, strict=True))


def test_stock_ksampler_unchanged_after_w2sd(server):
    """Nothing passed in is mutated: the same MODEL through stock KSampler afterwards gives stock."""
    before = server.run(base_graph(SD15_MINI, seed=21)).image
    for kind in PAIRS:
        server.run(pair_graph(kind, 21, **REFLECT))
    # The same stock graph again would come from ComfyUI's output cache; a x1.0 latent multiply makes
    # the KSampler run again while the MODEL is still the cached object the W2SD prompts were given.
    again = base_graph(SD15_MINI, seed=21)
    again["60"] = {"class_type": "LatentMultiply", "inputs": {"samples": ["5", 0], "multiplier": 1.0}}
    again["3"]["inputs"]["latent_image"] = ["60", 0]
    after = server.run(again).image
    assert np.array_equal(before, after)
