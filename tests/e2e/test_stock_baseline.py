"""The stock ComfyUI path on the tiny checkpoints: the baseline every W2SD test compares against.

Proves the harness itself: models load through the stock loaders, sampling is deterministic (within a
server and across processes), and each fixture (fine-tune, LoRA, ControlNet, SD3) changes the image.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from fixtures.checkpoints import SD3_MINI, SD15_MINI, SD15_MINI_CONTROLNET, SD15_MINI_FINETUNE, SD15_MINI_LORA


def txt2img(
    ckpt: str = SD15_MINI, seed: int = 1, steps: int = 4, cfg: float = 5.0, size: int = 64
) -> dict[str, Any]:
    """Checkpoint -> CLIPTextEncode x2 -> EmptyLatentImage -> KSampler -> VAEDecode -> PreviewImage."""
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "a red fox in the snow"}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "blurry"}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": size, "height": size, "batch_size": 1}},
        "5": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["1", 0],
                "positive": ["2", 0],
                "negative": ["3", 0],
                "latent_image": ["4", 0],
                "seed": seed,
                "steps": steps,
                "cfg": cfg,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1.0,
            },
        },  # fmt: skip
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
        "7": {"class_type": "PreviewImage", "inputs": {"images": ["6", 0]}},
    }


def with_lora(graph: dict[str, Any], strength: float) -> dict[str, Any]:
    graph["10"] = {
        "class_type": "LoraLoader",
        "inputs": {
            "model": ["1", 0], "clip": ["1", 1], "lora_name": SD15_MINI_LORA,
            "strength_model": strength, "strength_clip": strength,
        },
    }  # fmt: skip
    graph["2"]["inputs"]["clip"] = graph["3"]["inputs"]["clip"] = ["10", 1]
    graph["5"]["inputs"]["model"] = ["10", 0]
    return graph


def with_controlnet(graph: dict[str, Any], strength: float = 1.0) -> dict[str, Any]:
    graph["11"] = {"class_type": "ControlNetLoader", "inputs": {"control_net_name": SD15_MINI_CONTROLNET}}
    graph["12"] = {
        "class_type": "EmptyImage",
        "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0xFF8000},
    }
    graph["13"] = {
        "class_type": "ControlNetApplyAdvanced",
        "inputs": {
            "positive": ["2", 0], "negative": ["3", 0], "control_net": ["11", 0], "image": ["12", 0],
            "strength": strength, "start_percent": 0.0, "end_percent": 1.0,
        },
    }  # fmt: skip
    graph["5"]["inputs"]["positive"] = ["13", 0]
    graph["5"]["inputs"]["negative"] = ["13", 1]
    return graph


def sd3_txt2img(seed: int = 1) -> dict[str, Any]:
    graph = txt2img(SD3_MINI, seed=seed)
    graph["4"] = {"class_type": "EmptySD3LatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}}
    graph["5"]["inputs"]["scheduler"] = "simple"
    return graph


def differ(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


def test_same_seed_same_image_different_seed_different_image(server):
    first = server.run(txt2img(seed=1)).image
    other = server.run(txt2img(seed=2)).image
    again = server.run(txt2img(seed=1)).image  # seed 2 ran in between: the sampler really re-ran
    assert first.shape == (64, 64, 3) and first.dtype == np.uint8
    assert first.std() > 1, "the image is flat: the models did not run"
    np.testing.assert_array_equal(first, again)
    assert differ(first, other) > 1


def test_fine_tune_differs_from_base(server):
    base = server.run(txt2img(SD15_MINI, seed=3)).image
    tuned = server.run(txt2img(SD15_MINI_FINETUNE, seed=3)).image
    assert differ(base, tuned) > 1


def test_lora_loads_every_module_and_changes_the_image(server):
    base = server.run(txt2img(seed=4)).image
    log_before = len(server.log_text())
    lora = server.run(with_lora(txt2img(seed=4), strength=1.0)).image
    assert "lora key not loaded" not in server.log_text()[log_before:]
    assert differ(base, lora) > 1
    zero = server.run(with_lora(txt2img(seed=4), strength=0.0)).image
    np.testing.assert_array_equal(base, zero)


def test_controlnet_applies_and_changes_the_image(server):
    base = server.run(txt2img(seed=5)).image
    controlled = server.run(with_controlnet(txt2img(seed=5))).image
    assert differ(base, controlled) > 1


def test_sd3_mini_samples_through_stock_nodes(server):
    first = server.run(sd3_txt2img(seed=1)).image
    other = server.run(sd3_txt2img(seed=2)).image
    assert first.shape == (64, 64, 3)
    assert first.std() > 1
    assert differ(first, other) > 1


def test_rejected_prompt_reports_comfyui_message(server):
    graph = txt2img()
    graph["1"]["inputs"]["ckpt_name"] = "no_such_model.safetensors"
    message = server.run_error(graph)
    assert "no_such_model.safetensors" in message


def test_outputs_are_identical_across_server_processes(server, server_factory):
    expected = server.run(txt2img(seed=6)).image
    second = server_factory()
    np.testing.assert_array_equal(second.run(txt2img(seed=6)).image, expected)


def test_server_imported_every_node_module(server):
    """A broken environment (e.g. a mismatched torchaudio) shows as comfy_extras import failures."""
    log = server.log_text()
    assert "IMPORT FAILED" not in log and "Cannot import" not in log, server.log_tail(200)
