"""Every shipped example workflow (workflows/*.json) loads in the real frontend as a user opens it: every
node type is known, no missing-nodes dialog, every link intact, widgets as saved, and
`app.graphToPrompt()` yields a prompt for every executable node."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from browser.comfy_page import open_app

WORKFLOWS = sorted((Path(__file__).resolve().parents[2] / "workflows").glob("*.json"))
FRONTEND_ONLY = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}

LOAD_AND_CHECK = """async (wf) => {
  await app.loadGraphData(wf);
  await new Promise((r) => setTimeout(r, 300));  // the missing-nodes dialog opens after the load
  const problems = [];
  for (const node of wf.nodes) {
    if (!LiteGraph.registered_node_types[node.type]) problems.push(`unknown node type ${node.type} (node ${node.id})`);
  }
  for (const node of app.graph._nodes) {
    if (node.has_errors) problems.push(`node ${node.id} (${node.type}) is marked as an error`);
  }
  for (const d of document.querySelectorAll(".p-dialog")) {
    if (/missing/i.test(d.innerText)) problems.push(`dialog: ${d.innerText.slice(0, 200)}`);
  }
  const links = app.graph.links instanceof Map ? [...app.graph.links.values()] : Object.values(app.graph.links);
  if (links.length !== wf.links.length) problems.push(`${wf.links.length} links saved, ${links.length} loaded`);
  for (const link of links) {
    const origin = app.graph.getNodeById(link.origin_id), target = app.graph.getNodeById(link.target_id);
    const output = origin?.outputs?.[link.origin_slot], input = target?.inputs?.[link.target_slot];
    if (!output?.links?.includes(link.id) || input?.link !== link.id) {
      problems.push(`link ${link.id} ${link.origin_id}:${link.origin_slot} -> ${link.target_id}:${link.target_slot} is broken`);
    } else if (!LiteGraph.isValidConnection(output.type, input.type)) {
      problems.push(`link ${link.id} joins ${output.type} to ${input.type}`);
    }
  }
  for (const node of app.graph._nodes) {
    for (const [i, input] of (node.inputs ?? []).entries()) {
      if (!input.widget && input.link == null && !input.shape) problems.push(`node ${node.id} (${node.type}) input ${i} ${input.name} is not connected`);
    }
  }
  let output = null;
  try {
    output = (await app.graphToPrompt()).output;
  } catch (e) {
    problems.push(`graphToPrompt: ${e}`);
  }
  return JSON.parse(JSON.stringify({ problems, saved: app.graph.serialize(), output }));
}"""


@pytest.fixture(scope="module")
def page(server, chromium_browser):  # type: ignore[no-untyped-def]
    pg = chromium_browser.new_page(viewport={"width": 1400, "height": 900})
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(f"{e}\n{e.stack}"))
    open_app(pg, server.url + "/", ("W2SDKSampler", "W2SDGuider"))
    pg.w2sd_errors = errors
    yield pg
    pg.close()


def load(page: Any, workflow: dict[str, Any]) -> dict[str, Any]:
    del page.w2sd_errors[:]
    result = page.evaluate(LOAD_AND_CHECK, workflow)
    result["problems"] += page.w2sd_errors
    page.keyboard.press("Escape")  # close a dialog, if any, before the next workflow
    return result


def test_there_are_workflows() -> None:
    assert len(WORKFLOWS) >= 10, WORKFLOWS


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_loads_intact(page, path):  # type: ignore[no-untyped-def]
    workflow = json.loads(path.read_text())
    result = load(page, workflow)
    assert result["problems"] == []

    # Loading changed nothing: same nodes, widget values and links as the file.
    def nodes(wf: dict[str, Any]) -> dict[int, tuple[Any, ...]]:
        return {n["id"]: (n["type"], n.get("widgets_values") or [], n.get("mode", 0)) for n in wf["nodes"]}

    assert nodes(result["saved"]) == nodes(workflow)
    assert sorted(map(tuple, result["saved"]["links"])) == sorted(map(tuple, workflow["links"]))

    # The prompt the Run button would queue holds every executable node with its class.
    executable = {str(n["id"]): n["type"] for n in workflow["nodes"] if n["type"] not in FRONTEND_ONLY}
    assert {k: v["class_type"] for k, v in result["output"].items()} == executable


def test_the_check_reports_a_missing_node_type(page):  # type: ignore[no-untyped-def]
    workflow = json.loads(WORKFLOWS[0].read_text())
    workflow["nodes"][1]["type"] = "W2SDNoSuchNode"
    problems = load(page, workflow)["problems"]
    assert any("unknown node type W2SDNoSuchNode" in p for p in problems), problems
    assert any(p.startswith("dialog:") and "W2SDNoSuchNode" in p for p in problems), problems


def test_the_check_reports_a_broken_link(page):  # type: ignore[no-untyped-def]
    workflow = json.loads(WORKFLOWS[0].read_text())
    link = workflow["links"][0]
    link[3] = max(n["id"] for n in workflow["nodes"]) + 100  # its target node does not exist
    problems = load(page, workflow)["problems"]
    assert problems, "a link to a missing node went unnoticed"
