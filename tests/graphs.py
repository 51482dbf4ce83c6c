"""API-format graph builders shared by the e2e tests, benchmarks and the demo.

Each builder returns a fresh dict in ComfyUI's API format. Node "9" is always the output (a PreviewImage
of the decoded image) and node "3" the sampler, so tests can read results in one place.
"""

from __future__ import annotations

import copy
from typing import Any

from fixtures.checkpoints import SD15_MINI, SD15_MINI_CONTROLNET, SD15_MINI_FINETUNE, SD15_MINI_LORA

# Every node id the pack ships (ids are part of saved workflows: never renamed).
W2SD_NODE_IDS = (
    "W2SDKSampler", "W2SDKSamplerAdvanced", "W2SDGuider", "W2SDModelPair", "W2SDLoraSplit", "W2SDCFGGap",
)  # fmt: skip
PROMPT = "a photo of a red fox in the snow"
NEGATIVE = "blurry"
REFINED_PROMPT = "a detailed photo of a red fox standing in fresh snow, sharp focus, natural light"


def base_graph(
    ckpt: str,
    seed: int = 1,
    steps: int = 6,
    cfg: float = 5.5,
    sampler: str = "euler",
    scheduler: str = "karras",
    size: int = 64,
    batch: int = 1,
    denoise: float = 1.0,
) -> dict[str, Any]:
    """The stock txt2img graph: checkpoint -> prompts -> KSampler -> VAE decode -> preview."""
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": PROMPT, "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": NEGATIVE, "clip": ["4", 1]}},
        "5": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": size, "height": size, "batch_size": batch},
        },
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["4", 0],
                "seed": seed,
                "steps": steps,
                "cfg": cfg,
                "sampler_name": sampler,
                "scheduler": scheduler,
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["5", 0],
                "denoise": denoise,
            },
        },
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}},
    }


REFLECTION_DEFAULTS: dict[str, Any] = {
    "mode": "W2SD",
    "window": "steps",
    "start_percent": 0.0,
    "end_percent": 0.5,
    "reflect_steps": -1,
    "inversion": "explicit",
    "inversion_iters": 3,
    "equal_budget": False,
}


def w2sd_graph(
    graph: dict[str, Any], pair: list[Any], model: list[Any] | None = None, **reflection: Any
) -> dict[str, Any]:
    """The same graph with its KSampler replaced by a W2SD KSampler fed `pair` (and optionally `model`)."""
    g = copy.deepcopy(graph)
    inputs = dict(g["3"]["inputs"])
    if model is not None:
        inputs["model"] = model
    inputs.update({"pair": pair, **REFLECTION_DEFAULTS, **reflection})
    g["3"] = {"class_type": "W2SDKSampler", "inputs": inputs}
    return g


def add_cfg_gap(
    g: dict[str, Any],
    strong_cfg: float = 5.5,
    weak_cfg: float = 0.0,
    pair: list[Any] | None = None,
    node: str = "20",
) -> list[Any]:
    inputs: dict[str, Any] = {"strong_cfg": strong_cfg, "weak_cfg": weak_cfg}
    if pair is not None:
        inputs["pair"] = pair
    g[node] = {"class_type": "W2SDCFGGap", "inputs": inputs}
    return [node, 0]


def add_lora_split(
    g: dict[str, Any], lora: str, main: float = 0.8, strong: float = 1.5, weak: float = -1.5, node: str = "21"
) -> tuple[list[Any], list[Any]]:
    """A LoRA-scale splitter on the checkpoint; the prompts are re-wired to its CLIP (LoRA at main scale).

    Returns (model output, pair output)."""
    g[node] = {
        "class_type": "W2SDLoraSplit",
        "inputs": {
            "model": ["4", 0],
            "lora_name": lora,
            "main_scale": main,
            "strong_scale": strong,
            "weak_scale": weak,
            "clip": ["4", 1],
        },
    }
    for prompt in ("6", "7"):
        g[prompt]["inputs"]["clip"] = [node, 2]
    return [node, 0], [node, 1]


def add_checkpoint(g: dict[str, Any], ckpt: str, node: str = "22") -> list[Any]:
    g[node] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}}
    return [node, 0]


def add_model_pair(g: dict[str, Any], node: str = "23", **inputs: Any) -> list[Any]:
    g[node] = {"class_type": "W2SDModelPair", "inputs": {"strong_cfg": -1.0, "weak_cfg": -1.0, **inputs}}
    return [node, 0]


def add_prompt(g: dict[str, Any], text: str, node: str) -> list[Any]:
    g[node] = {"class_type": "CLIPTextEncode", "inputs": {"text": text, "clip": ["4", 1]}}
    return [node, 0]


def add_controlnet(
    g: dict[str, Any], controlnet: str, strength: float = 0.5, node: str = "30"
) -> tuple[list[Any], list[Any]]:
    """Positive and negative with a ControlNet applied (a flat grey hint image)."""
    g[f"{node}1"] = {"class_type": "ControlNetLoader", "inputs": {"control_net_name": controlnet}}
    g[f"{node}2"] = {
        "class_type": "EmptyImage",
        "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 8421504},
    }
    g[node] = {
        "class_type": "ControlNetApplyAdvanced",
        "inputs": {
            "positive": ["6", 0],
            "negative": ["7", 0],
            "control_net": [f"{node}1", 0],
            "image": [f"{node}2", 0],
            "strength": strength,
            "start_percent": 0.0,
            "end_percent": 1.0,
        },
    }
    return [node, 0], [node, 1]


def guider_graph(
    graph: dict[str, Any],
    pair: list[Any],
    sampler: str = "euler",
    scheduler: str = "karras",
    **reflection: Any,
) -> dict[str, Any]:
    """SamplerCustomAdvanced with the W2SD guider, KSamplerSelect and BasicScheduler."""
    g = copy.deepcopy(graph)
    k = g.pop("3")["inputs"]
    g["10"] = {
        "class_type": "W2SDGuider",
        "inputs": {
            "model": k["model"],
            "positive": k["positive"],
            "negative": k["negative"],
            "cfg": k["cfg"],
            "pair": pair,
            **REFLECTION_DEFAULTS,
            **reflection,
        },
    }
    g["11"] = {"class_type": "KSamplerSelect", "inputs": {"sampler_name": sampler}}
    g["12"] = {
        "class_type": "BasicScheduler",
        "inputs": {"model": k["model"], "scheduler": scheduler, "steps": k["steps"], "denoise": k["denoise"]},
    }
    g["13"] = {"class_type": "RandomNoise", "inputs": {"noise_seed": k["seed"]}}
    g["3"] = {
        "class_type": "SamplerCustomAdvanced",
        "inputs": {
            "noise": ["13", 0],
            "guider": ["10", 0],
            "sampler": ["11", 0],
            "sigmas": ["12", 0],
            "latent_image": k["latent_image"],
        },
    }
    return g


def stock_custom_graph(
    graph: dict[str, Any], sampler: str = "euler", scheduler: str = "karras"
) -> dict[str, Any]:
    """SamplerCustomAdvanced with the stock CFGGuider: the baseline for the guider tests."""
    g = copy.deepcopy(graph)
    k = g.pop("3")["inputs"]
    g["10"] = {
        "class_type": "CFGGuider",
        "inputs": {
            "model": k["model"],
            "positive": k["positive"],
            "negative": k["negative"],
            "cfg": k["cfg"],
        },
    }
    g["11"] = {"class_type": "KSamplerSelect", "inputs": {"sampler_name": sampler}}
    g["12"] = {
        "class_type": "BasicScheduler",
        "inputs": {"model": k["model"], "scheduler": scheduler, "steps": k["steps"], "denoise": k["denoise"]},
    }
    g["13"] = {"class_type": "RandomNoise", "inputs": {"noise_seed": k["seed"]}}
    g["3"] = {
        "class_type": "SamplerCustomAdvanced",
        "inputs": {
            "noise": ["13", 0],
            "guider": ["10", 0],
            "sampler": ["11", 0],
            "sigmas": ["12", 0],
            "latent_image": k["latent_image"],
        },
    }
    return g


# Each pair type of the paper's Table 7 on the SD1.5 mini: builder(graph) -> (pair, sampler model or None).
def lora_pair(g):
    model, pair = add_lora_split(g, SD15_MINI_LORA)
    return pair, model


def checkpoint_pair(g):
    return add_model_pair(g, strong_model=add_checkpoint(g, SD15_MINI_FINETUNE), weak_model=["4", 0]), None


def cfg_pair(g):
    return add_cfg_gap(g), None


def prompt_pair(g):
    return add_model_pair(
        g, strong_positive=add_prompt(g, REFINED_PROMPT, "24"), weak_positive=["6", 0]
    ), None


def controlnet_pair(g):
    positive, negative = add_controlnet(g, SD15_MINI_CONTROLNET)
    return add_model_pair(g, strong_positive=positive, strong_negative=negative), None


def cumulative_pair(g):
    model, pair = add_lora_split(g, SD15_MINI_LORA)
    return add_cfg_gap(g, pair=pair), model


PAIRS = {
    "lora": lora_pair,
    "checkpoints": checkpoint_pair,
    "cfg": cfg_pair,
    "prompt": prompt_pair,
    "controlnet": controlnet_pair,
    "cumulative": cumulative_pair,
}


def pair_graph(kind: str, seed: int, **reflection):
    g = base_graph(SD15_MINI, seed=seed)
    pair, model = PAIRS[kind](g)
    return w2sd_graph(g, pair, model=model, **reflection)
