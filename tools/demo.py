"""`python3 tools/dev.py demo`: the pack on a real headless ComfyUI with tiny models, images into out/.

1. Every example workflow `workflows/*.json` (UI format) is converted to API format with the server's
   /object_info, its model files are swapped for the tiny checkpoints, sizes are cut to at most
   MAX_SIDE px and schedules to MAX_STEPS steps (the tiny models run on the CPU), and it runs; its
   images go to out/workflows/.
2. A comparison sheet out/comparison.png from TRAINED models (tools/learned_models.py: small SD3-family
   digit models learned from scikit-learn's 8x8 handwritten digits): one row per pair type of the paper,
   columns stock KSampler | W2SD | S2WD from the same seeds, API graphs built here (`reflection_graphs`),
   and under each column the row's target figure as benchmarks/judges.py's digit classifier measures it
   on those samples. benchmarks/learned.py measures the same with many more samples and intervals.

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

import numpy as np
from comfy_server import PACK_LINK_NAME, REPO_ROOT, ComfyServer
from PIL import Image, ImageDraw, ImageFont
from workflow_api import replace_missing_choices, ui_to_api

for _path in (REPO_ROOT / "tests", REPO_ROOT / "benchmarks"):  # fixtures + graphs; judges
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
from graphs import (  # noqa: E402  (API graph builders shared with the e2e tests)
    add_cfg_gap,
    add_model_pair,
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


# -- comparison sheet ---------------------------------------------------------------------------
# Trained models (tools/learned_models.py: digit MMDiTs learned from scikit-learn's 8x8 digits), one row
# per pair type of the paper, stock | W2SD | S2WD from the same seeds, the judge's figure under each column.

SHEET_STEPS = 10
SHEET_DIGITS = (0, 2, 3, 5, 8, 9)
"""Prompts of the class-conditional rows, one digit per line of a tile."""
PER_DIGIT = 6  # samples per prompt (a tile shows them all; the figure is measured on them)
SHEET_GRID = 6
UNCONDITIONAL_SAMPLES = 36


def _learned() -> Any:
    import learned_models

    return learned_models


def _sheet_base(ckpt: str, text: str, batch: int, seed: int) -> dict[str, Any]:
    """Stock txt2img for the digit models: checkpoint -> prompts -> KSampler -> VAE decode -> preview."""
    lm = _learned()
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": text, "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": lm.NEGATIVE_PROMPT, "clip": ["4", 1]}},
        "5": {"class_type": "EmptySD3LatentImage", "inputs": {"width": SHEET_SIZE, "height": SHEET_SIZE, "batch_size": batch}},
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["4", 0], "seed": seed, "steps": SHEET_STEPS, "cfg": 1.0, "sampler_name": "euler",
                "scheduler": "simple", "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0],
                "denoise": 1.0,
            },
        },
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}},
    }  # fmt: skip


def _lora_split(g: dict[str, Any], spec: dict[str, Any]) -> tuple[list[Any], list[Any]]:
    sc = spec["scales"]
    g["21"] = {
        "class_type": "W2SDLoraSplit",
        "inputs": {
            "model": ["4", 0], "lora_name": spec["lora"], "main_scale": sc["main"],
            "strong_scale": sc["strong"], "weak_scale": sc["weak"],
        },
    }  # fmt: skip
    return ["21", 0], ["21", 1]


def _lora_stock(g: dict[str, Any], spec: dict[str, Any]) -> None:
    """Stock reference of a LoRA row: LoraLoaderModelOnly at the split's main scale."""
    g["21"] = {
        "class_type": "LoraLoaderModelOnly",
        "inputs": {"model": ["4", 0], "lora_name": spec["lora"], "strength_model": spec["scales"]["main"]},
    }
    g["3"]["inputs"]["model"] = ["21", 0]


def _checkpoints_pair(g: dict[str, Any], spec: dict[str, Any]) -> tuple[list[Any], list[Any] | None]:
    g["22"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": spec["weak"]}}
    return add_model_pair(g, strong_model=["4", 0], weak_model=["22", 0]), None


def _lora_pair(g: dict[str, Any], spec: dict[str, Any]) -> tuple[list[Any], list[Any] | None]:
    model, pair = _lora_split(g, spec)
    return pair, model


def _cfg_pair(g: dict[str, Any], spec: dict[str, Any]) -> tuple[list[Any], list[Any] | None]:
    return add_cfg_gap(g, spec["strong_cfg"], spec["weak_cfg"]), None


def _prompt_pair(g: dict[str, Any], spec: dict[str, Any]) -> tuple[list[Any], list[Any] | None]:
    g["24"] = {"class_type": "CLIPTextEncode", "inputs": {"text": spec["weak_positive"], "clip": ["4", 1]}}
    return add_model_pair(g, strong_positive=["6", 0], weak_positive=["24", 0]), None


def _lora_cfg_pair(g: dict[str, Any], spec: dict[str, Any]) -> tuple[list[Any], list[Any] | None]:
    model, pair = _lora_split(g, spec)
    return add_cfg_gap(g, spec["strong_cfg"], spec["weak_cfg"], pair=pair), model


PAIR_ROWS: dict[
    str, tuple[str, Callable[[dict[str, Any], dict[str, Any]], tuple[list[Any], list[Any] | None]]]
] = {
    "two checkpoints\n(class ratio)": ("checkpoints", _checkpoints_pair),
    "LoRA +1.5 / -1.5": ("lora", _lora_pair),
    "CFG gap (Z-Sampling)": ("cfg", _cfg_pair),
    "refined vs raw prompt": ("prompt", _prompt_pair),
    "LoRA + CFG gap": ("lora_cfg", _lora_cfg_pair),
}
"""Pair types (rows of the sheet): key of learned_models.PAIRS and how the pair is wired into a graph."""


def _row_spec(row: str) -> dict[str, Any]:
    return _learned().PAIRS[PAIR_ROWS[row][0]]


def _row_jobs(row: str) -> list[tuple[str, int | None, int]]:
    """(prompt, digit asked for or None, batch) of one row's graphs."""
    lm, spec = _learned(), _row_spec(row)
    if spec["metric"] == "prompt_accuracy":
        return [(lm.prompt(k), k, PER_DIGIT) for k in SHEET_DIGITS]
    return [(spec["positive"], None, UNCONDITIONAL_SAMPLES)]


def _row_ckpt(spec: dict[str, Any]) -> str:
    return spec.get("strong") or spec["checkpoint"]


def stock_graph(row: str, text: str, batch: int, seed: int = SEED) -> dict[str, Any]:
    spec = _row_spec(row)
    g = _sheet_base(_row_ckpt(spec), text, batch, seed)
    if "lora" in spec:
        _lora_stock(g, spec)
    return g


REFLECTION_WIDGETS = (
    "window", "start_percent", "end_percent", "reflect_steps", "inversion", "inversion_iters", "equal_budget",
    "keep_sampler_history",
)  # fmt: skip


def node_defaults(object_info: dict[str, Any], node: str = "W2SDKSampler") -> dict[str, Any]:
    """The reflection widgets' defaults as the server declares them: what a user gets on a new node."""
    declared = {**object_info[node]["input"]["required"], **object_info[node]["input"].get("optional", {})}
    return {name: declared[name][1]["default"] for name in REFLECTION_WIDGETS if name in declared}


def reflection_graphs(
    row: str, object_info: dict[str, Any], text: str, batch: int, seed: int = SEED
) -> dict[str, dict[str, Any] | None]:
    """The W2SD and S2WD graphs of one row at the node's defaults; None where the pack's nodes are not
    available.

    This is where the W2SD nodes plug into the demo (node ids from docs/DESIGN.md)."""
    if "W2SDKSampler" not in object_info:
        return dict.fromkeys(MODE_OF_COLUMN)
    spec = _row_spec(row)
    defaults = node_defaults(object_info)
    graphs: dict[str, dict[str, Any] | None] = {}
    for column, mode in MODE_OF_COLUMN.items():
        g = _sheet_base(_row_ckpt(spec), text, batch, seed)
        pair, model = PAIR_ROWS[row][1](g, spec)
        graphs[column] = w2sd_graph(g, pair, model=model, **{**defaults, "mode": mode})
    return graphs


def judge_column(row: str, images: list[np.ndarray], asked: list[int | None]) -> str:
    """The row's target metric on these samples (benchmarks/judges.py's classifier), as a caption."""
    import judges

    spec = _row_spec(row)
    digits = judges.image_to_digit(np.stack(images).astype(np.float32) / 255.0)
    pred = judges.predict(digits)
    if spec["metric"] == "prompt_accuracy":
        hits = int((pred == np.array(asked)).sum())
        return f"prompt accuracy {hits / len(pred):.2f} ({hits}/{len(pred)})"
    digits = spec["minority"]
    hits = int(np.isin(pred, digits).sum())
    return f"digits {min(digits)}-{max(digits)} share {hits / len(pred):.2f} ({hits}/{len(pred)})"


def _font(size: int) -> Any:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _tile(images: list[np.ndarray], per_line: int) -> Image.Image:
    """SHEET_GRID x SHEET_GRID samples (the first SHEET_GRID of each line of `per_line`) in one tile."""
    tile = SHEET_SIZE * TILE_SCALE
    cell = tile // SHEET_GRID
    out = Image.new("RGB", (tile, tile), "white")
    lines = [images[i : i + per_line] for i in range(0, len(images), per_line)]
    if len(lines) == 1:  # unconditional: fill the grid row by row
        lines = [images[i : i + SHEET_GRID] for i in range(0, len(images), SHEET_GRID)]
    for r, line in enumerate(lines[:SHEET_GRID]):
        for c, image in enumerate(line[:SHEET_GRID]):
            sample = Image.fromarray(image).resize((cell - 2, cell - 2), Image.NEAREST)
            out.paste(sample, (c * cell + 1, r * cell + 1))  # a white line between samples
    return out


def comparison_sheet(rows: dict[str, dict[str, tuple[Image.Image, str] | None]]) -> Image.Image:
    """A labelled grid: one row per pair type, one column per sampler, the measured figure under each tile."""
    tile = SHEET_SIZE * TILE_SCALE
    label_w, header_h, pad, caption_h = 190, 34, 8, 22
    sheet = Image.new(
        "RGB",
        (label_w + len(COLUMNS) * (tile + pad), header_h + len(rows) * (tile + caption_h + pad)),
        "white",
    )
    draw = ImageDraw.Draw(sheet)
    font, small = _font(16), _font(12)
    for c, column in enumerate(COLUMNS):
        x = label_w + c * (tile + pad) + tile // 2
        draw.text((x, header_h // 2), column, fill="black", font=font, anchor="mm")
    for r, (row, cells) in enumerate(rows.items()):
        y = header_h + r * (tile + caption_h + pad)
        draw.multiline_text((8, y + tile // 2), row, fill="black", font=font, anchor="lm")
        for c, column in enumerate(COLUMNS):
            x = label_w + c * (tile + pad)
            cell = cells.get(column)
            if cell is None:
                draw.rectangle((x, y, x + tile - 1, y + tile - 1), outline="gray")
                draw.multiline_text(
                    (x + tile // 2, y + tile // 2), "W2SD nodes\nnot loaded", fill="gray", font=font,
                    anchor="mm", align="center",
                )  # fmt: skip
            else:
                image, caption = cell
                sheet.paste(image, (x, y))
                draw.text((x + tile // 2, y + tile + 3), caption, fill="black", font=small, anchor="ma")
    return sheet


def make_comparison(server: ComfyServer, out_dir: Path, log: Log) -> Path:
    """Install the trained digit models on `server` and draw out_dir/comparison.png."""
    _learned().install_learned_models(server.base_dir, server.comfyui)
    info = server.object_info()
    rows: dict[str, dict[str, tuple[Image.Image, str] | None]] = {}
    for row in PAIR_ROWS:
        images: dict[str, list[np.ndarray] | None] = {column: [] for column in COLUMNS}
        asked: list[int | None] = []
        for j, (text, digit, batch) in enumerate(_row_jobs(row)):
            seed = SEED + j
            graphs = {
                "stock": stock_graph(row, text, batch, seed),
                **reflection_graphs(row, info, text, batch, seed),
            }
            for column, graph in graphs.items():
                if graph is None:
                    images[column] = None
                elif images[column] is not None:
                    images[column].extend(server.run(graph).images["9"])
            asked += [digit] * batch
        per_line = len(asked) // len(_row_jobs(row))
        rows[row] = {
            column: None if imgs is None else (_tile(imgs, per_line), judge_column(row, imgs, asked))
            for column, imgs in images.items()
        }
        log(f"comparison row: {row.replace(chr(10), ' ')}: " + "; ".join(
            f"{column} {cell[1]}" for column, cell in rows[row].items() if cell is not None
        ))  # fmt: skip
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
        log("building/linking the tiny checkpoints and the trained digit models (first time ~1 min)")
        install_fixtures(base, comfyui)
        _learned().install_learned_models(base, comfyui)
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
