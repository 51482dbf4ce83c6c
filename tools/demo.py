"""`python3 tools/dev.py demo`: the pack on a real headless ComfyUI with tiny models, images into out/.

1. Every example workflow `workflows/*.json` (UI format) is converted to API format with the server's
   /object_info, its model files are swapped for the tiny checkpoints, sizes are cut to at most
   MAX_SIDE px and schedules to MAX_STEPS steps (the tiny models run on the CPU), and it runs; its
   images go to out/workflows/. The family workflows (Z-Image, Qwen-Image, Flux.1, Wan 2.2:
   tools/example_workflows.py) are validated against /object_info and not run: their text encoders have
   no tiny form in the core's loaders, and the demo says so for each.
2. The comparison sheet out/comparison.png (tools/comparison_sheet.py): TRAINED digit models
   (tools/learned_models.py), one row per pair type of the paper, stock KSampler | W2SD | S2WD at the
   node's defaults from the trained-model benchmark's own seeds, each column captioned with what
   benchmarks/learned.py measured there on 500 samples.

The example workflows run on random-weight miniatures (their images are noise-like: they show the
wiring works end to end); image quality needs real checkpoints in your own ComfyUI (see USAGE).
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

import comparison_sheet
import numpy as np
from comfy_server import PACK_LINK_NAME, REPO_ROOT, ComfyServer
from PIL import Image
from workflow_api import replace_missing_choices, ui_to_api

for _path in (REPO_ROOT / "tests", REPO_ROOT / "benchmarks"):  # fixtures; judges
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))
from fixtures.checkpoints import (  # noqa: E402
    SD3_MINI,
    SD15_MINI,
    SD15_MINI_CONTROLNET,
    SD15_MINI_FINETUNE,
    SD15_MINI_LORA,
    install_fixtures,
)

MAX_SIDE = 128
MAX_STEPS = 8
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


def validate_only(path: Path, object_info: dict[str, Any], core: tuple[int, ...]) -> str | None:
    """None for a workflow that runs on the tiny models; for a family workflow (tools/example_workflows.py)
    the line the demo prints instead: validated against the server and why it is not run, or why this core
    cannot take it. A family workflow that does not validate raises."""
    from example_workflows import MODEL_FILE_INPUTS, family
    from workflow_api import invalid_values

    spec = family(path)
    if spec is None:
        return None
    if core < spec.core:
        needs = ".".join(map(str, spec.core))
        return f"not run here: saved from ComfyUI {needs}'s nodes, which this core lacks"
    api = ui_to_api(json.loads(path.read_text()), object_info)
    problems = invalid_values(api, object_info, MODEL_FILE_INPUTS)
    if problems:
        raise ValueError(f"{path.name} does not validate: {problems}")
    return f"{len(api)} nodes validated against /object_info; {spec.not_run}"


def runs_on_tiny_models(path: Path) -> bool:
    from example_workflows import family

    return family(path) is None


def run_workflows(
    server: ComfyServer, workflows: list[Path], out_dir: Path, log: Log, **limits: int
) -> list[Path]:
    """Run each workflow (see prepare_workflow; `limits`: max_side, max_steps) but the family workflows,
    which are validated and named with the reason (validate_only); images into out_dir."""
    from example_workflows import core_version

    info = server.object_info()
    core = core_version(server.comfyui)
    written = []
    for path in workflows:
        reason = validate_only(path, info, core)
        if reason is not None:
            log(f"workflow {path.name}: {reason}")
            continue
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
        log("building/linking the tiny checkpoints and the trained digit models (first time ~1 min)")
        install_fixtures(base, comfyui)
        comparison_sheet.learned_models().install_learned_models(base, comfyui)
        write_input_image(base)
        log(f"starting ComfyUI ({comfyui}) with the pack linked into custom_nodes")
        with ComfyServer(base, comfyui) as server:
            log(f"ComfyUI is up at {server.url}")
            workflows = sorted((REPO_ROOT / "workflows").glob("*.json"))
            if not workflows:
                log("no example workflows in workflows/ yet")
            written = run_workflows(server, workflows, out_dir, log)
            sheet = out_dir / "comparison.png"
            comparison_sheet.make_sheet(server, sheet, log)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    log(f"wrote {len(written)} workflow image(s) to {out_dir / 'workflows'}")
    log(f"wrote the comparison sheet {sheet}")
    print(USAGE)
    return 0
