"""tools/workflow_api.py against the real frontend: the converter must produce what the browser's own
`app.graphToPrompt()` sends to /prompt, for the default workflow and every shipped example workflow."""

from __future__ import annotations

import json
from typing import Any

import pytest
from browser.comfy_page import open_app
from comfy_server import comfyui_dir
from example_workflows import core_version, for_core
from workflow_api import ui_to_api

WORKFLOWS = for_core(core_version(comfyui_dir()))  # the family workflows need 0.29.0's nodes


@pytest.fixture(scope="module")
def page(server, chromium_browser):
    page = chromium_browser.new_page()
    open_app(page, server.url + "/")
    yield page
    page.close()


def frontend_conversion(page: Any, workflow: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(UI workflow as the frontend serializes it, API prompt from app.graphToPrompt())."""
    result = page.evaluate(
        """async (wf) => {
          await (wf ? app.loadGraphData(wf) : app.loadGraphData());
          const p = await app.graphToPrompt();
          return JSON.parse(JSON.stringify({workflow: p.workflow, output: p.output}));
        }""",
        workflow,
    )
    return result["workflow"], result["output"]


def strip_meta(api: dict[str, Any]) -> dict[str, Any]:
    return {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in api.items()}


@pytest.mark.parametrize("path", [None, *WORKFLOWS], ids=lambda p: p.name if p else "default")
def test_converter_matches_the_frontend(server, page, path):
    workflow = json.loads(path.read_text()) if path else None
    ui, expected = frontend_conversion(page, workflow)
    assert strip_meta(ui_to_api(ui, server.object_info())) == strip_meta(expected)


# Built node by node: the default graph differs between frontends (1.47's has no CheckpointLoaderSimple).
REROUTE_BYPASS_MUTE = """async () => {
  await app.loadGraphData({ last_node_id: 0, last_link_id: 0, nodes: [], links: [], groups: [], config: {},
    extra: {}, version: 0.4 });
  const g = app.graph;
  const add = (type) => { const node = LiteGraph.createNode(type); g.add(node); return node; };
  // Inputs by name: frontend 1.47 gives widgets input slots too, so slot numbers differ.
  const link = (a, slot, b, name) => a.connect(slot, b, b.findInputSlot(name));
  const ckpt = add("CheckpointLoaderSimple");
  const positive = add("CLIPTextEncode"), negative = add("CLIPTextEncode");
  link(ckpt, 1, positive, "clip");
  link(ckpt, 1, negative, "clip");
  const latent = add("EmptyLatentImage");
  const sampler = add("KSampler");
  const reroute = add("Reroute");
  ckpt.connect(0, reroute, 0);
  const lora = add("LoraLoader");
  link(reroute, 0, lora, "model");
  link(ckpt, 1, lora, "clip");
  link(lora, 0, sampler, "model");
  lora.mode = 4;  // bypassed: MODEL passes through from the reroute
  link(positive, 0, sampler, "positive");
  link(negative, 0, sampler, "negative");
  link(latent, 0, sampler, "latent_image");
  const decode = add("VAEDecode");
  link(sampler, 0, decode, "samples");
  link(ckpt, 2, decode, "vae");
  link(decode, 0, add("SaveImage"), "images");
  const muted = add("SaveImage");
  link(decode, 0, muted, "images");
  muted.mode = 2;
  const p = await app.graphToPrompt();
  return JSON.parse(JSON.stringify({workflow: p.workflow, output: p.output}));
}"""


def test_converter_follows_reroutes_and_bypasses_and_drops_muted_nodes(server, page):
    result = page.evaluate(REROUTE_BYPASS_MUTE)
    api = ui_to_api(result["workflow"], server.object_info())
    assert strip_meta(api) == strip_meta(result["output"])
    class_types = [node["class_type"] for node in api.values()]
    assert {"Reroute", "LoraLoader"}.isdisjoint(class_types)
    assert class_types.count("SaveImage") == 1  # the muted one is left out
    sampler = next(node for node in api.values() if node["class_type"] == "KSampler")
    checkpoint = next(k for k, node in api.items() if node["class_type"] == "CheckpointLoaderSimple")
    assert sampler["inputs"]["model"] == [checkpoint, 0]  # through the reroute and the bypassed LoRA
