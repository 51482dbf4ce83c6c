"""`python3 tools/dev.py demo`: the pack on a real headless ComfyUI with tiny models, images into out/.

1. Every example workflow `workflows/*.json` (UI format) is converted to API format with the server's
   /object_info, its model files are swapped for the tiny checkpoints, sizes are cut to at most
   MAX_SIDE px and schedules to MAX_STEPS steps (the tiny models run on the CPU), and it runs; its
   images go to out/workflows/.
2. A comparison sheet out/comparison.png: one row per pair type, columns stock KSampler | W2SD | S2WD,
   same seed and prompt, from API graphs built here (`reflection_graphs`).

The models are random-weight miniatures: the images are noise-like. The demo shows the wiring works
end to end; image quality needs real checkpoints in your own ComfyUI (see USAGE).
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from comfy_server import PACK_LINK_NAME, REPO_ROOT, ComfyServer
from PIL import Image, ImageDraw, ImageFont
from workflow_api import replace_missing_choices, ui_to_api

sys.path.insert(0, str(REPO_ROOT / "tests"))
from fixtures.checkpoints import (  # noqa: E402
    SD3_MINI,
    SD15_MINI,
    SD15_MINI_CONTROLNET,
    SD15_MINI_FINETUNE,
    SD15_MINI_LORA,
    install_fixtures,
)
from graphs import (  # noqa: E402  (API graph builders shared with the e2e tests)
    REFINED_PROMPT,
    add_cfg_gap,
    add_checkpoint,
    add_controlnet,
    add_lora_split,
    add_model_pair,
    add_prompt,
    base_graph,
    w2sd_graph,
)

MAX_SIDE = 128
MAX_STEPS = 8
SHEET_SIZE = 64  # sampling size of the comparison graphs; tiles are scaled up TILE_SCALE x
TILE_SCALE = 3
SEED = 42
COLUMNS = ("stock", "W2SD", "S2WD")
MODE_OF_COLUMN = {"W2SD": "W2SD", "S2WD": "S2WD (diagnosis)"}
INPUT_IMAGE = "w2sd_demo_input.png"

USAGE = f"""\
Use the pack in your own ComfyUI:
  ln -s {REPO_ROOT} <your ComfyUI>/custom_nodes/{PACK_LINK_NAME}    (or git clone it there)
  restart ComfyUI; the nodes are under "W2SD" (search "w2sd"); the example workflows are in
  Workflow > Browse Templates under this pack. W2SD KSampler is a drop-in for KSampler: give it a
  pair (LoRA split, model pair, CFG gap) that says what differs between the strong and weak side."""

Log = Callable[[str], None]


# -- example workflows --------------------------------------------------------------------------


def choose_fixture(class_type: str, name: str, value: Any, options: list[Any]) -> Any:
    """A tiny stand-in for a file the demo server does not have."""
    text = str(value).lower()
    if ("ckpt" in name or name.endswith("model_name")) and SD15_MINI in options:
        if "sd3" in text:
            return SD3_MINI
        # A named fine-tune is the strong side of a pair; the base model is the weak one.
        base = re.search(r"v1[-_.]?5|sd[-_]?v?1[-_.]?5|sd15|base|pruned", text)
        return SD15_MINI if base else SD15_MINI_FINETUNE
    if "lora" in name and SD15_MINI_LORA in options:
        return SD15_MINI_LORA
    if "control" in name and SD15_MINI_CONTROLNET in options:
        return SD15_MINI_CONTROLNET
    if name == "image" and INPUT_IMAGE in options:
        return INPUT_IMAGE
    return options[0] if options else value


def shrink(api: dict[str, Any], max_side: int = MAX_SIDE, max_steps: int = MAX_STEPS) -> list[str]:
    """Cut image sizes to max_side and schedules to max_steps (tiny CPU models); returns what changed."""
    changes = []
    for node_id, node in api.items():
        inputs = node["inputs"]
        w, h = inputs.get("width"), inputs.get("height")
        if isinstance(w, int) and isinstance(h, int) and max(w, h) > max_side:
            scale = max_side / max(w, h)
            inputs["width"], inputs["height"] = (max(16, round(v * scale / 16) * 16) for v in (w, h))
            changes.append(
                f"node {node_id} ({node['class_type']}): {w}x{h} -> {inputs['width']}x{inputs['height']}"
            )
        # reflect_steps counts reflected steps, which must stay below the number of steps.
        for name, limit in (("steps", max_steps), ("reflect_steps", max_steps - 1)):
            value = inputs.get(name)
            if isinstance(value, int) and value > limit:
                inputs[name] = limit
                changes.append(f"node {node_id} ({node['class_type']}).{name}: {value} -> {limit}")
    return changes


def prepare_workflow(
    path: Path, object_info: dict[str, Any], max_side: int = MAX_SIDE, max_steps: int = MAX_STEPS
) -> tuple[dict[str, Any], list[str]]:
    """A workflow file as an API prompt for the tiny models, and what was changed for them."""
    api = ui_to_api(json.loads(path.read_text()), object_info)
    changes = replace_missing_choices(api, object_info, choose_fixture) + shrink(api, max_side, max_steps)
    return api, changes


def run_workflows(
    server: ComfyServer, workflows: list[Path], out_dir: Path, log: Log, **limits: int
) -> list[Path]:
    """Run each workflow (see prepare_workflow; `limits`: max_side, max_steps); images into out_dir."""
    info = server.object_info()
    written = []
    for path in workflows:
        api, changes = prepare_workflow(path, info, **limits)
        for change in changes:
            log(f"  {path.name}: {change}")
        result = server.run(api)
        count = 0
        for node_id, images in result.images.items():
            # Named after the output node's title, so "W2SD result" and "stock" files tell themselves apart.
            title = re.sub(r"[^A-Za-z0-9]+", "_", api[node_id].get("_meta", {}).get("title", node_id)).strip(
                "_"
            )
            for i, image in enumerate(images):
                target = (
                    out_dir
                    / "workflows"
                    / f"{path.stem}__{node_id}_{title}{f'_{i}' if len(images) > 1 else ''}.png"
                )
                target.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(image).save(target)
                written.append(target)
                count += 1
        log(f"workflow {path.name}: {count} image(s)")
    return written


# -- comparison sheet ---------------------------------------------------------------------------


def _lora_row(g: dict[str, Any]) -> tuple[list[Any], list[Any] | None]:
    model, pair = add_lora_split(g, SD15_MINI_LORA)
    return pair, model


def _lora_stock(g: dict[str, Any]) -> None:
    """Stock reference for the LoRA row: LoraLoader at the split's main scale (0.8)."""
    g["21"] = {
        "class_type": "LoraLoader",
        "inputs": {
            "model": ["4", 0], "clip": ["4", 1], "lora_name": SD15_MINI_LORA,
            "strength_model": 0.8, "strength_clip": 0.8,
        },
    }  # fmt: skip
    g["3"]["inputs"]["model"] = ["21", 0]
    for prompt in ("6", "7"):
        g[prompt]["inputs"]["clip"] = ["21", 1]


PAIR_ROWS: dict[str, Callable[[dict[str, Any]], tuple[list[Any], list[Any] | None]]] = {
    "LoRA scales (+1.5 / -1.5)": _lora_row,
    "fine-tune vs base": lambda g: (
        add_model_pair(g, strong_model=add_checkpoint(g, SD15_MINI_FINETUNE), weak_model=["4", 0]),
        None,
    ),
    "CFG gap (5.5 / 0)": lambda g: (add_cfg_gap(g), None),
    "refined vs raw prompt": lambda g: (
        add_model_pair(g, strong_positive=add_prompt(g, REFINED_PROMPT, "24"), weak_positive=["6", 0]),
        None,
    ),
    "ControlNet vs none": lambda g: (
        add_model_pair(
            g,
            **dict(
                zip(
                    ("strong_positive", "strong_negative"),
                    add_controlnet(g, SD15_MINI_CONTROLNET),
                    strict=True,
                )
            ),
        ),
        None,
    ),
}
"""Pair types (rows of the sheet): each wires a W2SD pair into a base graph; returns (pair, model or None)."""


def stock_graph(row: str) -> dict[str, Any]:
    g = base_graph(SD15_MINI, seed=SEED, size=SHEET_SIZE)
    if row == "LoRA scales (+1.5 / -1.5)":
        _lora_stock(g)
    return g


def reflection_graphs(row: str, object_info: dict[str, Any]) -> dict[str, dict[str, Any] | None]:
    """The W2SD and S2WD graphs of one row; None where the pack's nodes are not available.

    This is where the W2SD nodes plug into the demo (node ids from docs/DESIGN.md)."""
    if "W2SDKSampler" not in object_info:
        return dict.fromkeys(MODE_OF_COLUMN)
    graphs: dict[str, dict[str, Any] | None] = {}
    for column, mode in MODE_OF_COLUMN.items():
        g = base_graph(SD15_MINI, seed=SEED, size=SHEET_SIZE)
        pair, model = PAIR_ROWS[row](g)
        graphs[column] = w2sd_graph(g, pair, model=model, mode=mode)
    return graphs


def _font(size: int) -> Any:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def comparison_sheet(rows: dict[str, dict[str, np.ndarray | None]]) -> Image.Image:
    """A labelled grid: one row per pair type, one column per sampler."""
    tile = SHEET_SIZE * TILE_SCALE
    label_w, header_h, pad = 230, 34, 6
    sheet = Image.new(
        "RGB", (label_w + len(COLUMNS) * (tile + pad), header_h + len(rows) * (tile + pad)), "white"
    )
    draw = ImageDraw.Draw(sheet)
    font = _font(16)
    for c, column in enumerate(COLUMNS):
        draw.text(
            (label_w + c * (tile + pad) + tile // 2, header_h // 2),
            column,
            fill="black",
            font=font,
            anchor="mm",
        )
    for r, (row, images) in enumerate(rows.items()):
        y = header_h + r * (tile + pad)
        draw.text((8, y + tile // 2), row, fill="black", font=font, anchor="lm")
        for c, column in enumerate(COLUMNS):
            x = label_w + c * (tile + pad)
            image = images.get(column)
            if image is None:
                draw.rectangle((x, y, x + tile - 1, y + tile - 1), outline="gray")
                draw.text(
                    (x + tile // 2, y + tile // 2),
                    "W2SD nodes\nnot loaded",
                    fill="gray",
                    font=font,
                    anchor="mm",
                )
            else:
                sheet.paste(Image.fromarray(image).resize((tile, tile), Image.NEAREST), (x, y))
    return sheet


def make_comparison(server: ComfyServer, out_dir: Path, log: Log) -> Path:
    info = server.object_info()
    rows: dict[str, dict[str, np.ndarray | None]] = {}
    for row in PAIR_ROWS:
        images: dict[str, np.ndarray | None] = {"stock": server.run(stock_graph(row)).image}
        for column, graph in reflection_graphs(row, info).items():
            images[column] = server.run(graph).image if graph is not None else None
        rows[row] = images
        log(f"comparison row: {row}")
    target = out_dir / "comparison.png"
    comparison_sheet(rows).save(target)
    return target


# -- entry point --------------------------------------------------------------------------------


def write_input_image(base_dir: Path) -> None:
    """An RGB gradient that example workflows with a LoadImage node get as their input."""
    y, x = np.mgrid[0:256, 0:256]
    rgb = np.stack([x, y, 255 - x], axis=-1).astype(np.uint8)
    (base_dir / "input").mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(base_dir / "input" / INPUT_IMAGE)


def main(comfyui: Path, out_dir: Path, log: Log = print) -> int:
    out_dir.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="w2sd-demo-"))
    try:
        log("building/linking the tiny checkpoints (first time ~20 s)")
        install_fixtures(base, comfyui)
        write_input_image(base)
        log(f"starting ComfyUI ({comfyui}) with the pack linked into custom_nodes")
        with ComfyServer(base, comfyui) as server:
            log(f"ComfyUI is up at {server.url}")
            workflows = sorted((REPO_ROOT / "workflows").glob("*.json"))
            if not workflows:
                log("no example workflows in workflows/ yet")
            written = run_workflows(server, workflows, out_dir, log)
            sheet = make_comparison(server, out_dir, log)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    log(f"wrote {len(written)} workflow image(s) to {out_dir / 'workflows'}")
    log(f"wrote the comparison sheet {sheet}")
    print(USAGE)
    return 0
