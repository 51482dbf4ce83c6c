"""Every shipped example workflow (workflows/*.json) loads in the real frontend as a user opens it: every
node type is known, no missing-nodes dialog, every link intact, widgets as saved, and
`app.graphToPrompt()` yields a prompt for every executable node; it opens with the whole graph in view,
zoomed in far enough that the frontend draws the nodes' text, not just boxes (both when dropped on the
window and when opened from the template browser).

The workflows name the model files users have (sd_xl_base_1.0.safetensors, ...). A user with those files
is a server whose models folder holds them (the tiny fixtures under those names: the frontend checks only
names). Without them, frontend 1.47 marks each loader whose file is missing as an error: checked against
the plain test server, together with the note that tells the user which files to pick.

The family workflows (tools/example_workflows.py: Z-Image, Qwen-Image, Flux.1, Wan 2.2) are saved from ComfyUI
0.29.0's nodes; a core older than that lacks nodes and widgets they carry, so its frontend (1.25 on 0.3.52,
1.32 on 0.3.75) is not given them: they are checked on 1.47 (0.29.0).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from browser.comfy_page import drawn_texts, open_app
from comfy_server import PACK_LINK_NAME, comfyui_dir
from example_workflows import core_version, for_core
from fixtures.checkpoints import SD15_MINI, SD15_MINI_CONTROLNET, SD15_MINI_LORA, ensure_built
from PIL import Image

WORKFLOWS = for_core(core_version(comfyui_dir()))
FRONTEND_ONLY = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
# Widgets that name a file, its folder under models/ (workflows/build.py MODEL_FOLDERS) and a fixture
# of that kind to stand for it; LoadImage's image lives in input/.
MODEL_FILES = {
    "ckpt_name": ("checkpoints", SD15_MINI),
    "lora_name": ("loras", SD15_MINI_LORA),
    "control_net_name": ("controlnet", SD15_MINI_CONTROLNET),
    "unet_name": ("diffusion_models", SD15_MINI),
    "clip_name": ("text_encoders", SD15_MINI),
    "clip_name1": ("text_encoders", SD15_MINI),
    "clip_name2": ("text_encoders", SD15_MINI),
    "vae_name": ("vae", SD15_MINI),
}
WINDOW = {"width": 1280, "height": 800}  # the window the stored views are made for (workflows/build.py)
MISSING_MODELS_FLAGGED_SINCE = (1, 47)  # frontends 1.25 and 1.32 flag none; 1.47.10 flags each loader

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
  // Frontend 1.47 lists missing node types in its error panel instead of a dialog.
  for (const e of document.querySelectorAll("body span, body div")) {
    if (!e.children.length && /^missing node/i.test(e.textContent.trim())) problems.push(`error panel: ${e.textContent.trim()}`);
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
  const flagged = app.graph._nodes.filter((n) => n.has_errors).map((n) => Number(n.id));
  return JSON.parse(JSON.stringify({ problems, flagged, saved: app.graph.serialize(), output }));
}"""


def named_files(workflow: dict[str, Any], object_info: dict[str, Any]) -> list[tuple[int, str, str]]:
    """(node id, widget name, file) of every model file and input image the workflow names."""
    found = []
    for node in workflow["nodes"]:
        info = object_info.get(node["type"])
        if info is None or node.get("mode", 0) in (2, 4):
            continue
        names = []  # widgets_values are positional: one per widget input, two after control_after_generate
        for name, spec in {**info["input"].get("required", {}), **info["input"].get("optional", {})}.items():
            if isinstance(spec[0], list) or spec[0] in WIDGET_TYPES:
                names += (
                    [name, "control_after_generate"]
                    if len(spec) > 1 and spec[1].get("control_after_generate")
                    else [name]
                )
        for name, value in zip(names, node.get("widgets_values") or [], strict=False):
            if name in MODEL_FILES or (node["type"] == "LoadImage" and name == "image"):
                found.append((node["id"], name, value))
    return found


@pytest.fixture(scope="module")
def user_server(server, server_factory, tmp_path_factory):  # type: ignore[no-untyped-def]
    """A ComfyUI whose models and input folders hold every file the shipped workflows name."""
    base = tmp_path_factory.mktemp("comfy_user")
    fixtures = ensure_built(comfyui_dir())
    info = server.object_info()
    for path in WORKFLOWS:
        for _, name, value in named_files(json.loads(path.read_text()), info):
            if name == "image":
                (base / "input").mkdir(exist_ok=True)
                Image.new("RGB", (64, 64), "white").save(base / "input" / value)
                continue
            folder, fixture = MODEL_FILES[name]
            target = base / "models" / folder / value
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                target.symlink_to(fixtures / fixture)
    return server_factory(base)


def new_page(server, chromium_browser):  # type: ignore[no-untyped-def]
    pg = chromium_browser.new_page(viewport=WINDOW)
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(f"{e}\n{e.stack}"))
    open_app(pg, server.url + "/", ("W2SDKSampler", "W2SDGuider"))
    # Frontend 1.47 fades out a mask over the whole window after start-up; FREE_AREA would find it there.
    pg.wait_for_selector(".p-blockui-mask", state="detached", timeout=10_000)
    pg.w2sd_errors = errors
    return pg


@pytest.fixture(scope="module")
def page(user_server, chromium_browser):  # type: ignore[no-untyped-def]
    """The frontend of a user who has the files the workflows name."""
    pg = new_page(user_server, chromium_browser)
    yield pg
    pg.close()


@pytest.fixture(scope="module")
def bare_page(server, chromium_browser):  # type: ignore[no-untyped-def]
    """The frontend of the plain test server: none of the files the workflows name."""
    pg = new_page(server, chromium_browser)
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
    assert any(p.startswith(("dialog:", "error panel:")) and "W2SDNoSuchNode" in p for p in problems), (
        problems
    )


def test_the_check_reports_a_broken_link(page):  # type: ignore[no-untyped-def]
    workflow = json.loads(WORKFLOWS[0].read_text())
    link = workflow["links"][0]
    link[3] = max(n["id"] for n in workflow["nodes"]) + 100  # its target node does not exist
    problems = load(page, workflow)["problems"]
    assert problems, "a link to a missing node went unnoticed"


def frontend_version(page: Any) -> tuple[int, ...]:
    return tuple(int(x) for x in page.evaluate("() => window.__COMFYUI_FRONTEND_VERSION__").split(".")[:2])


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_without_the_files_exactly_their_loaders_are_flagged_and_the_note_names_them(
    bare_page, server, path: Path
) -> None:  # type: ignore[no-untyped-def]
    workflow = json.loads(path.read_text())
    info = server.object_info()
    files = named_files(workflow, info)
    models = [(node_id, name, value) for node_id, name, value in files if name in MODEL_FILES]
    assert models, "every workflow names a model file"
    missing = sorted(
        {node_id for node_id, name, value in files if value not in choices(info, workflow, node_id, name)}
    )
    assert {node_id for node_id, *_ in models} <= set(missing)  # the plain server has none of them
    result = load(bare_page, workflow)
    flagged = sorted(result["flagged"])
    assert flagged == (missing if frontend_version(bare_page) >= MISSING_MODELS_FLAGGED_SINCE else [])
    assert [p for p in result["problems"] if "is marked as an error" not in p] == []
    # The note says which file each loader names and where it goes, so the user knows what to pick.
    note = next(n["widgets_values"][0] for n in workflow["nodes"] if n["type"] == "Note")
    for _, name, value in models:
        assert f"{value} (models/{MODEL_FILES[name][0]})" in note, (value, note)


def choices(info: dict[str, Any], workflow: dict[str, Any], node_id: int, name: str) -> list[Any]:
    node_type = next(n["type"] for n in workflow["nodes"] if n["id"] == node_id)
    spec = {**info[node_type]["input"].get("required", {}), **info[node_type]["input"].get("optional", {})}[
        name
    ]
    return spec[0] if isinstance(spec[0], list) else spec[1].get("options", [])


FREE_AREA = """async () => {
  await app.loadGraphData({ last_node_id: 0, last_link_id: 0, nodes: [], links: [], groups: [], config: {},
    extra: {}, version: 0.4 });
  await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
  // The canvas fills the window; the side bar and the top bar lie over it. Walk in from each edge
  // until the point is the canvas itself.
  const canvas = app.canvas.canvas;
  const r = canvas.getBoundingClientRect();
  const onCanvas = (x, y) => document.elementFromPoint(x, y) === canvas;
  const midX = (r.left + r.right) / 2, midY = (r.top + r.bottom) / 2;
  let left = r.left, right = r.right, top = r.top, bottom = r.bottom;
  while (left < midX && !onCanvas(left + 0.5, midY)) left += 1;
  while (right > midX && !onCanvas(right - 0.5, midY)) right -= 1;
  while (top < midY && !onCanvas(midX, top + 0.5)) top += 1;
  while (bottom > midY && !onCanvas(midX, bottom - 0.5)) bottom -= 1;
  return { left, top, right, bottom };
}"""

OPEN_FILE = """async (wf) => {
  await app.loadGraphData(wf);
  await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
}"""

# What the template browser does with a pack's template (frontends 1.32 and 1.47; 1.25 has no openSource
# and restores the stored view): fetch it from the server and load it as a template, which 1.47 fits to
# the window instead of restoring extra.ds.
OPEN_TEMPLATE = """async (name) => {
  const wf = await (await fetch(`api/workflow_templates/${name}`)).json();
  await app.loadGraphData(wf, true, true, name, { openSource: "template" });
  await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
}"""

ON_SCREEN = """() => {
  const r = app.canvas.canvas.getBoundingClientRect();
  const { offset, scale } = app.canvas.ds;
  const x = (gx) => r.left + (gx + offset[0]) * scale, y = (gy) => r.top + (gy + offset[1]) * scale;
  const nodes = app.graph._nodes;
  const boxes = [...nodes.map((n) => n.getBounding()),
    ...(app.graph._groups ?? []).map((g) => [g.pos[0], g.pos[1], g.size[0], g.size[1]])];
  const screen = ([bx, by, bw, bh]) => ({ left: x(bx), top: y(by), right: x(bx + bw), bottom: y(by + bh) });
  const overlaps = [];
  for (const a of nodes) for (const b of nodes) {
    const [p, q] = [a.getBounding(), b.getBounding()];
    if (a.id < b.id && p[0] < q[0] + q[2] && q[0] < p[0] + p[2] && p[1] < q[1] + q[3] && q[1] < p[1] + p[3]) overlaps.push(`${a.title} / ${b.title}`);
  }
  return { ds: { offset: [...offset], scale }, overlaps,
    // 1.25: scale < a threshold setting (0.6); 1.32, 1.47: scale < MinFontSizeForLOD / NODE_TEXT_SIZE
    lowQuality: app.canvas.low_quality,
    threshold: app.canvas.low_quality_zoom_threshold ?? app.canvas._lowQualityZoomThreshold,
    box: { left: x(Math.min(...boxes.map((b) => b[0]))), top: y(Math.min(...boxes.map((b) => b[1]))),
      right: x(Math.max(...boxes.map((b) => b[0] + b[2]))), bottom: y(Math.max(...boxes.map((b) => b[1] + b[3]))) },
    w2sd: nodes.filter((n) => n.type.startsWith("W2SD")).map((n) => ({
      title: n.title, widget: n.widgets[0].label || n.widgets[0].name, box: screen(n.getBounding()) })),
  };
}"""

# Its 18 nodes with long titles do not fit a 1280 x 800 window at a zoom that draws text; frontend 1.47
# fits a template to the window (its stored view, which shows the W2SD nodes readably, is not used).
TOO_BIG_TO_FIT_READABLY = {"W2SD_comparison_stock_matched_CFG_equal_NFE_SDXL"}


def inside(box: dict[str, float], free: dict[str, float]) -> bool:
    return (
        free["left"] <= box["left"] and free["top"] <= box["top"]
        and box["right"] <= free["right"] and box["bottom"] <= free["bottom"]
    )  # fmt: skip


def assert_readable(page: Any, shown: dict[str, Any], free: dict[str, float]) -> None:
    """The frontend draws the nodes' text (not the low-quality boxes) and every W2SD node is in view, its
    title and first widget drawn; no node grew over another when the frontend sized it."""
    scale, threshold = shown["ds"]["scale"], shown["threshold"]
    assert not shown["lowQuality"], f"zoom {scale:.3f} is below the frontend's text threshold {threshold:.3f}"
    assert shown["overlaps"] == []
    drawn = drawn_texts(page)
    for node in shown["w2sd"]:
        assert inside(node["box"], free), f"{node['title']} at {node['box']}, free canvas {free}"
        # A title or widget label that does not fit is drawn shortened: "CFG-gap config (W2SD, Z-Sa...", "lora_n"
        assert any(text.startswith(node["title"][:12]) for text in drawn), (node["title"], drawn)
        assert any(text.startswith(node["widget"][:4]) for text in drawn), (node["widget"], drawn)


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_opens_with_the_whole_graph_in_view(page, path: Path) -> None:  # type: ignore[no-untyped-def]
    """In a 1280 x 800 window, the stored view (extra.ds) shows every node, note included, clear of the
    side bar and the top bar, with the text drawn."""
    workflow = json.loads(path.read_text())
    free = page.evaluate(FREE_AREA)
    page.evaluate(OPEN_FILE, workflow)
    shown = page.evaluate(ON_SCREEN)
    page.keyboard.press("Escape")
    assert shown["ds"]["scale"] == pytest.approx(
        workflow["extra"]["ds"]["scale"]
    )  # the stored view, not a refit
    assert shown["ds"]["offset"] == pytest.approx(workflow["extra"]["ds"]["offset"])
    assert inside(shown["box"], free), f"graph at {shown['box']}, free canvas {free}"
    assert_readable(page, shown, free)


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_opens_readable_from_the_template_browser(page, path: Path) -> None:  # type: ignore[no-untyped-def]
    workflow = json.loads(path.read_text())
    free = page.evaluate(FREE_AREA)
    page.evaluate(OPEN_TEMPLATE, f"{PACK_LINK_NAME}/{path.name}")
    shown = page.evaluate(ON_SCREEN)
    page.keyboard.press("Escape")
    assert inside(shown["box"], free), f"graph at {shown['box']}, free canvas {free}"
    refit = shown["ds"]["scale"] != pytest.approx(workflow["extra"]["ds"]["scale"])
    if refit and path.stem in TOO_BIG_TO_FIT_READABLY:
        assert shown["lowQuality"]  # if this fails, the exception is gone: drop it
        pytest.xfail("the frontend fits the whole graph to the window, below its text threshold")
    assert_readable(page, shown, free)
