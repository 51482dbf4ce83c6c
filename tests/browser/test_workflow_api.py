"""tools/workflow_api.py against the real frontend: the converter must produce what the browser's own
`app.graphToPrompt()` sends to /prompt, for the default workflow and every shipped example workflow."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from workflow_api import ui_to_api

WORKFLOWS = sorted((Path(__file__).resolve().parents[2] / "workflows").glob("*.json"))


@pytest.fixture(scope="module")
def page(server, chromium_browser):
    page = chromium_browser.new_page()
    page.goto(server.url)
    page.wait_for_selector("canvas#graph-canvas", timeout=90_000)
    page.wait_for_function("() => window.app && window.app.graph", timeout=90_000)
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


REROUTE_BYPASS_MUTE = """async () => {
  await app.loadGraphData();
  const g = app.graph;
  const ckpt = g.findNodesByType("CheckpointLoaderSimple")[0];
  const sampler = g.findNodesByType("KSampler")[0];
  const reroute = LiteGraph.createNode("Reroute");
  g.add(reroute);
  ckpt.connect(0, reroute, 0);
  const lora = LiteGraph.createNode("LoraLoader");
  g.add(lora);
  reroute.connect(0, lora, 0);
  ckpt.connect(1, lora, 1);
  lora.connect(0, sampler, 0);
  lora.mode = 4;  // bypassed: MODEL passes through from the reroute
  const muted = LiteGraph.createNode("SaveImage");
  g.add(muted);
  g.findNodesByType("VAEDecode")[0].connect(0, muted, 0);
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
    assert class_types.count("SaveImage") == 1  # the default graph's; the muted one is left out
