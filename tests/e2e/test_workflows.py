"""The shipped example workflows (workflows/*.json) as users get them: ComfyUI serves them as the pack's
templates, and each one, converted to API format from /object_info, runs on the tiny test models -- but the
family workflows (tools/example_workflows.py: Z-Image, Qwen-Image, Flux.1, Wan 2.2), whose text encoders have
no tiny form in the core's loaders: test_family_workflows.py validates those without running them."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from comfy_server import PACK_LINK_NAME
from example_workflows import runnable
from fixtures.checkpoints import (
    FIXTURES,
    SD3_MINI,
    SD15_MINI,
    SD15_MINI_CONTROLNET,
    SD15_MINI_FINETUNE,
    SD15_MINI_LORA,
)
from PIL import Image
from workflow_api import replace_missing_choices, ui_to_api

WORKFLOW_DIR = Path(__file__).resolve().parents[2] / "workflows"
WORKFLOWS = sorted(WORKFLOW_DIR.glob("*.json"))
RUN_HERE = runnable(WORKFLOWS)
W2SD_NODES = {
    "W2SDKSampler", "W2SDKSamplerAdvanced", "W2SDGuider", "W2SDModelPair", "W2SDLoraSplit", "W2SDCFGGap",
}  # fmt: skip
BASE_CHECKPOINTS = ("sd_xl_base", "v1-5-pruned")
HINT_IMAGE = "w2sd_hint.png"
SIZE, MAX_STEPS = 64, 3


def for_tiny_models(api: dict[str, Any], object_info: dict[str, Any]) -> list[str]:
    """Swap the users' model files for the test fixtures (by family: SD3 -> SD3 mini, a base checkpoint
    -> SD1.5 mini, any other -> its "fine-tune"; LoRA, ControlNet, image likewise) and shrink every
    image to 64 px and every schedule to at most 3 steps. Returns what changed, one line each."""

    def choose(class_type: str, name: str, value: Any, options: list[Any]) -> Any:
        if name == "ckpt_name":
            if "sd3" in value.lower():
                return SD3_MINI
            return SD15_MINI if value.startswith(BASE_CHECKPOINTS) else SD15_MINI_FINETUNE
        return {"lora_name": SD15_MINI_LORA, "control_net_name": SD15_MINI_CONTROLNET, "image": HINT_IMAGE}[
            name
        ]

    changes = replace_missing_choices(api, object_info, choose)
    for node_id, node in api.items():
        inputs = node["inputs"]
        for name, limit in (
            ("width", SIZE),
            ("height", SIZE),
            ("steps", MAX_STEPS),
            ("reflect_steps", MAX_STEPS - 1),
        ):
            if isinstance(inputs.get(name), int) and inputs[name] > limit:
                changes.append(f"node {node_id} ({node['class_type']}).{name}: {inputs[name]} -> {limit}")
                inputs[name] = limit
    return changes


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


# --- what ships ----------------------------------------------------------------------------------------


def test_every_workflow_has_a_thumbnail_and_uses_user_model_names() -> None:
    assert len(WORKFLOWS) >= 10
    for path in WORKFLOWS:
        assert path.with_suffix(".jpg").is_file(), f"{path.name} has no thumbnail"
        assert Image.open(path.with_suffix(".jpg")).format == "JPEG"
        text = path.read_text()
        assert not any(fixture in text for fixture in FIXTURES), f"{path.name} names a test fixture"
    assert sorted(p.stem for p in WORKFLOW_DIR.glob("*.jpg")) == [p.stem for p in WORKFLOWS]


def test_every_w2sd_node_is_in_some_workflow() -> None:
    used = {node["type"] for path in WORKFLOWS for node in load(path)["nodes"]}
    assert W2SD_NODES <= used, W2SD_NODES - used


def test_comfyui_serves_the_workflows_and_thumbnails_as_templates(server) -> None:
    templates = server.request("/api/workflow_templates")
    assert sorted(templates[PACK_LINK_NAME]) == [p.stem for p in WORKFLOWS]  # listed once each
    for path in WORKFLOWS:
        for suffix in (".json", ".jpg"):
            url = f"{server.url}/api/workflow_templates/{PACK_LINK_NAME}/{urllib.parse.quote(path.stem + suffix)}"
            with urllib.request.urlopen(url, timeout=30) as response:
                assert response.read() == path.with_suffix(suffix).read_bytes(), url


# --- every workflow runs -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def object_info(server) -> dict[str, Any]:
    Image.new("RGB", (SIZE, SIZE), "white").save(server.base_dir / "input" / HINT_IMAGE)
    return server.object_info()


def test_the_remapping_is_what_it_says(object_info) -> None:
    api = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"}},
        "2": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "juggernautXL_v9.safetensors"}},
        "3": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd3.5_medium.safetensors"}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 1024, "height": 768, "batch_size": 1}},
        "5": {"class_type": "KSampler", "inputs": {"steps": 50, "cfg": 5.5}},
    }
    for_tiny_models(api, object_info)
    assert [api[k]["inputs"]["ckpt_name"] for k in "123"] == [SD15_MINI, SD15_MINI_FINETUNE, SD3_MINI]
    assert api["4"]["inputs"] == {"width": 64, "height": 64, "batch_size": 1}
    assert api["5"]["inputs"] == {"steps": MAX_STEPS, "cfg": 5.5}


@pytest.mark.parametrize("path", RUN_HERE, ids=lambda p: p.stem)
def test_workflow_runs_on_tiny_models(server, object_info, path) -> None:
    api = ui_to_api(load(path), object_info)
    for_tiny_models(api, object_info)
    result = server.run(api)
    outputs = {k for k, v in api.items() if v["class_type"] in ("SaveImage", "PreviewImage")}
    assert set(result.images) == outputs, (set(result.images), outputs)
    for node_id, images in result.images.items():
        if api[node_id]["class_type"] == "SaveImage":
            assert [img.shape for img in images] == [(SIZE, SIZE, 3)], node_id
    if "comparison" in path.stem:
        saved = {api[k]["_meta"]["title"][:2]: result.images[k][0] for k in outputs}
        assert sorted(saved) == ["1.", "2.", "3.", "4."]
        stock, w2sd = saved["1."].astype(np.int16), saved["4."].astype(np.int16)
        assert np.abs(stock - w2sd).mean() > 0.5, "W2SD rendered the stock image"
