"""The demo's comparison sheet: what the trained-model benchmark measured, drawn from the same seeds.

One row per pair type of the paper, columns stock KSampler | W2SD | S2WD at the node's defaults, sampled
through a running ComfyUI server with the digit models of tools/learned_models.py. Each tile shows the
first samples of the benchmark's own seeds (benchmarks/learned.py: seed 1000 + 1000 x prompt), each
digit enlarged with nearest-neighbour scaling in a frame: green where the judge (benchmarks/judges.py)
reads the row's target -- a digit 0-4 for the class-ratio pairs, the prompt's digit for the condition
pairs. Under each tile: the figure the benchmark measured on 500 samples with its 95% interval and its
paired difference to stock (read from the rows files in benchmarks/results/learned_rows/), and the
tile's own count. A tile is too small to measure anything; the figures are what to read.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from comfy_server import REPO_ROOT, ComfyServer
from PIL import Image, ImageDraw, ImageFont

ROWS_DIR = REPO_ROOT / "benchmarks" / "results" / "learned_rows"
COLUMNS = {"stock": "stock", "W2SD": "defaults", "S2WD": "s2wd_defaults"}
"""Sheet column -> the benchmark row (benchmarks/learned.py ROWS) that measured it."""
MODE_OF_COLUMN = {"W2SD": "W2SD", "S2WD": "S2WD (diagnosis)"}
STEPS = 10
SIZE = 64  # px sampled (an 8x8 latent); each digit is drawn from its 8x8 reading, PIXEL px a pixel
PIXEL = 7
PER_LINE = 6  # samples per line of a tile
LINES = 4  # lines of a tile: the unconditional rows' samples, or one prompt digit each
PROMPT_DIGITS = (0, 3, 5, 8)
REFLECTION_WIDGETS = (
    "window", "start_percent", "end_percent", "reflect_steps", "inversion", "inversion_iters", "equal_budget",
    "keep_sampler_history",
)  # fmt: skip


@dataclass(frozen=True)
class SheetRow:
    title: str
    pair: str  # key of learned_models.PAIRS
    family: str  # "flow" (SD3-family MMDiTs) or "eps" (SD1.5-family UNets)
    rows_files: tuple[str, ...]  # under ROWS_DIR: the runs that measured this cell, first match wins
    note: str = ""  # a line under the row: what the figures alone do not say
    sweep: tuple[str, ...] = ()  # rows files with stock's trade-off in this cell (more steps, a CFG sweep)
    sweep_pair: str = ""  # the pair those rows are filed under, if not `pair` (the same model and prompts)


SHEET_ROWS = (
    SheetRow(
        "two checkpoints\n(class ratio)", "checkpoints", "flow", ("all_pairs_defaults.json",),
        sweep=("flow_euler_10_curves.json",),
    ),
    SheetRow(
        "LoRA +1.5 / -1.5", "lora", "flow", ("all_pairs_defaults.json",),
        "W2SD moves the most here, and pays for it: Frechet distance 7.20 against stock's 6.08 (rougher digits).",
        sweep=("flow_euler_10_curves.json",),
    ),
    SheetRow(
        "CFG gap 3 / 0\n(Z-Sampling)", "cfg", "eps", ("eps_cfg_10.json", "eps_cond_s2wd_10.json"),
        "Beyond stock's CFG curve: stock cfg 3.5's accuracy (paired -0.004 [-0.016, +0.004]) at a Frechet distance "
        "0.44 [0.34, 0.54] lower, for 28 evaluations against 10.",
        sweep=("eps_cfg_10.json", "eps_cfg_10_more.json"),
    ),
    SheetRow(
        "refined vs raw prompt", "prompt", "eps", ("eps_prompt_10.json", "eps_cond_s2wd_10.json"),
        "On stock's CFG curve, not beyond it: stock between cfg 1.5 and 2 does the same with 10 evaluations.",
        sweep=("eps_cfg_10.json", "eps_cfg_10_more.json"), sweep_pair="cfg",
    ),
    SheetRow(
        "LoRA + CFG gap", "lora_cfg", "eps", ("eps_lora_cfg_10.json", "eps_cond_s2wd_10.json"),
        "Stock at cfg 3 gets the same accuracy at cleaner digits with 10 evaluations: raise CFG instead.",
        sweep=("eps_lora_cfg_10.json",),
    ),
)  # fmt: skip
"""The sheet: rows whose W2SD effect the benchmark measured with an interval excluding zero (euler, 10
steps). The condition pairs run on the EPS UNets, which need CFG to follow a prompt (stock accuracy 0.51
at cfg 1); the flow models follow it at cfg 1 already (0.99), where these pairs have nothing to show."""
FLOW_CONDITION_NOTE = (
    "Not shown: the condition pairs on the flow models, which follow their prompt at cfg 1 already "
    "(stock accuracy 0.99): nothing to gain there."
)


def learned_models() -> Any:
    import learned_models

    return learned_models


def benchmark() -> Any:
    """benchmarks/learned.py: its seeds, families (empty latent node) and samplers are the sheet's."""
    import learned

    return learned


def euler_scheduler(family: str) -> str:
    """The scheduler the benchmark samples euler with on this family (ComfyUI's default for it)."""
    return str(benchmark().sampler_and_scheduler("euler", family)[1])


# -- graphs ---------------------------------------------------------------------------------------


def _files(row: SheetRow) -> dict[str, Any]:
    return learned_models().pairs(row.family)[row.pair]


def jobs(row: SheetRow) -> list[tuple[str, int | None, int, int]]:
    """(prompt, digit asked for or None, seed, batch) of one row's graphs: the benchmark's seeds."""
    lm, spec, seed = learned_models(), _files(row), benchmark().SEED  # prompt j's samples: seed + 1000 j
    if spec["metric"] == "prompt_accuracy":
        return [(lm.prompt(k), k, seed + 1000 * k, PER_LINE) for k in PROMPT_DIGITS]
    return [(spec["positive"], None, seed, PER_LINE * LINES)]


def benchmark_index(row: SheetRow, n: int) -> np.ndarray:
    """Where the sheet's samples sit among a benchmark row's n stored samples: benchmarks/learned.py splits
    n evenly over its prompts (the ten digits, or the one unconditional prompt), in order, from the same
    seeds the sheet uses."""
    if _files(row)["metric"] == "prompt_accuracy":
        return np.concatenate([k * (n // 10) + np.arange(PER_LINE) for k in PROMPT_DIGITS])
    return np.arange(PER_LINE * LINES)


def _base(row: SheetRow, text: str, seed: int, batch: int) -> dict[str, Any]:
    """Stock txt2img: checkpoint (LoRA at the split's main scale) -> prompts -> KSampler -> decode."""
    lm, spec = learned_models(), _files(row)
    g: dict[str, Any] = {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": spec.get("strong") or spec["checkpoint"]}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": text, "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": lm.NEGATIVE_PROMPT, "clip": ["4", 1]}},
        "5": {"class_type": benchmark().FAMILIES[row.family][0], "inputs": {"width": SIZE, "height": SIZE, "batch_size": batch}},
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["4", 0], "seed": seed, "steps": STEPS, "cfg": spec["cfg"], "sampler_name": "euler",
                "scheduler": euler_scheduler(row.family), "positive": ["6", 0], "negative": ["7", 0],
                "latent_image": ["5", 0], "denoise": 1.0,
            },
        },
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}},
    }  # fmt: skip
    return g


def stock_graph(row: SheetRow, text: str, seed: int, batch: int) -> dict[str, Any]:
    g = _base(row, text, seed, batch)
    spec = _files(row)
    if "lora" in spec:
        g["21"] = {
            "class_type": "LoraLoaderModelOnly",
            "inputs": {
                "model": ["4", 0],
                "lora_name": spec["lora"],
                "strength_model": spec["scales"]["main"],
            },
        }
        g["3"]["inputs"]["model"] = ["21", 0]
    return g


def _pair(g: dict[str, Any], row: SheetRow) -> list[Any]:
    """Wire the row's pair into g (a LoRA split replaces the sampler's model); returns the PAIR output."""
    spec = _files(row)
    pair: list[Any] | None = None
    if "lora" in spec:
        sc = spec["scales"]
        g["21"] = {
            "class_type": "W2SDLoraSplit",
            "inputs": {
                "model": ["4", 0], "lora_name": spec["lora"], "main_scale": sc["main"],
                "strong_scale": sc["strong"], "weak_scale": sc["weak"],
            },
        }  # fmt: skip
        g["3"]["inputs"]["model"] = ["21", 0]
        pair = ["21", 1]
    if "strong_cfg" in spec:
        gap = {"strong_cfg": spec["strong_cfg"], "weak_cfg": spec["weak_cfg"]}
        g["20"] = {"class_type": "W2SDCFGGap", "inputs": {**gap, **({"pair": pair} if pair else {})}}
        pair = ["20", 0]
    elif row.pair == "checkpoints":
        g["22"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": spec["weak"]}}
        g["23"] = {
            "class_type": "W2SDModelPair",
            "inputs": {"strong_model": ["4", 0], "weak_model": ["22", 0]},
        }
        pair = ["23", 0]
    elif row.pair == "prompt":
        g["24"] = {
            "class_type": "CLIPTextEncode",
            "inputs": {"text": spec["weak_positive"], "clip": ["4", 1]},
        }
        g["23"] = {
            "class_type": "W2SDModelPair",
            "inputs": {"strong_positive": ["6", 0], "weak_positive": ["24", 0]},
        }
        pair = ["23", 0]
    if pair is None:
        raise ValueError(f"row {row.pair!r}: no pair wiring for it")
    return pair


def node_defaults(object_info: dict[str, Any], node: str = "W2SDKSampler") -> dict[str, Any]:
    """The reflection widgets' defaults as the server declares them: what a user gets on a new node."""
    declared = {**object_info[node]["input"]["required"], **object_info[node]["input"].get("optional", {})}
    return {name: declared[name][1]["default"] for name in REFLECTION_WIDGETS if name in declared}


def reflection_graph(
    row: SheetRow, column: str, defaults: dict[str, Any], text: str, seed: int, batch: int
) -> dict[str, Any]:
    """The row's W2SD KSampler graph for one column (W2SD or S2WD) at the node's defaults."""
    g = _base(row, text, seed, batch)
    pair = _pair(g, row)
    inputs = {**g["3"]["inputs"], "pair": pair, **defaults, "mode": MODE_OF_COLUMN[column]}
    g["3"] = {"class_type": "W2SDKSampler", "inputs": inputs}
    return g


# -- the benchmark's figures -----------------------------------------------------------------------


@functools.cache
def _read_rows_file(name: str) -> dict[str, Any]:
    """A rows file, parsed once per process (several sheet rows and their sweeps share files of 1-3 MB).
    Read-only: callers copy what they change."""
    data: dict[str, Any] = json.loads((ROWS_DIR / name).read_text())
    return data


def _rows_file(name: str, family: str) -> dict[str, Any]:
    """A rows file of benchmarks/learned.py, refused if it measured another model family."""
    data = _read_rows_file(name)
    if data.get("family") != family:
        raise ValueError(f"rows file {name}: family {data.get('family')!r}, this sheet row needs {family!r}")
    return data


def measured(row: SheetRow) -> dict[str, dict[str, Any]]:
    """Sheet column -> its benchmark row as stored (setting, figures, vs_stock, samples)."""
    found: dict[str, dict[str, Any]] = {}
    for name in row.rows_files:
        data = _rows_file(name, row.family)
        for r in data["rows"]:
            for column, bench_row in COLUMNS.items():
                if (r["pair"], r["sampler"], r["row"]) == (
                    row.pair,
                    "euler",
                    bench_row,
                ) and column not in found:
                    found[column] = {**r, "steps": data["steps"]}
    missing = [c for c in COLUMNS if c not in found]
    if missing:
        raise ValueError(f"sheet row {row.pair!r}: {', '.join(missing)} not in {', '.join(row.rows_files)}")
    return found


def stock_tradeoff(row: SheetRow) -> list[tuple[str, float, float]]:
    """(label, target, Frechet) of the stock rows measured for this cell beyond plain stock: more steps
    (the node defaults' NFE) and the CFG sweep, by cfg."""
    pair = row.sweep_pair or row.pair
    rows = [r for name in row.sweep for r in _rows_file(name, row.family)["rows"]]
    found = []
    for r in rows:
        if r["pair"] != pair or r["sampler"] != "euler":
            continue
        figure = (r["figures"][r["metric"]][0], r["figures"]["frechet"][0])
        if r["row"] == "stock_nfe_defaults":
            found.append((-1.0, f"{r['setting']['steps']} steps", *figure))
        elif r["row"].startswith("cfg_"):
            found.append((float(r["setting"]["cfg"]), f"cfg {r['setting']['cfg']:g}", *figure))
    return [(label, t, f) for _, label, t, f in sorted(found)]


def note_lines(row: SheetRow) -> list[str]:
    """The row's note and, where measured, what stock reaches with more steps or more CFG: what the W2SD
    column is up against."""
    import textwrap

    lines = [row.note] if row.note else []
    tradeoff = stock_tradeoff(row)
    if tradeoff:
        lines.append(
            "stock instead: " + ", ".join(f"{label} {t:.2f} at Frechet {f:.2f}" for label, t, f in tradeoff)
        )
    return [part for line in lines for part in textwrap.wrap(line, NOTE_CHARS)]


def _interval(v: list[float], digits: int, sign: bool = False) -> str:
    f = f"{{:{'+' if sign else ''}.{digits}f}}"
    return f"{f.format(v[0])} [{f.format(v[1])}, {f.format(v[2])}]"


def captions(column: str, bench: dict[str, Any], hits: int, shown: int) -> list[str]:
    """Lines under a tile: the benchmark's figure, its paired difference to stock, quality, the tile's count."""
    metric = bench["metric"]
    name = "share of 0-4" if metric == "minority_share" else "prompt accuracy"
    n = bench["n"]
    lines = [f"{name} {_interval(bench['figures'][metric], 2)} (n={n})"]
    vs = bench.get("vs_stock", {}).get(metric)
    lines.append("" if column == "stock" or vs is None else f"vs stock {_interval(vs, 2, sign=True)}")
    lines.append(
        f"Frechet {bench['figures']['frechet'][0]:.2f}   NFE {bench['nfe']}   this tile: {hits}/{shown}"
    )
    return lines


# -- drawing --------------------------------------------------------------------------------------

GREEN, GRAY, INK = (40, 190, 70), (205, 205, 205), (20, 20, 20)
FRAME = 3
CELL = 8 * PIXEL + 2 * FRAME + 4  # a digit, its frame, a 2-px margin each side
TILE_W, TILE_H = PER_LINE * CELL, LINES * CELL
LABEL_W, HEADER_H, CAPTION_H, NOTE_H, PAD = 200, 36, 54, 18, 18
NOTE_CHARS = 190  # a note line's width in characters of the small font


def _font(size: int) -> Any:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def tile(digits: np.ndarray, hits: np.ndarray) -> Image.Image:
    """(N, 8, 8) digits in [0, 1], N = PER_LINE x LINES, each enlarged and framed (green: a hit)."""
    out = Image.new("RGB", (TILE_W, TILE_H), "white")
    draw = ImageDraw.Draw(out)
    for i, (digit, hit) in enumerate(zip(digits, hits, strict=True)):
        x, y = (i % PER_LINE) * CELL + 2, (i // PER_LINE) * CELL + 2
        draw.rectangle((x, y, x + CELL - 5, y + CELL - 5), fill=GREEN if hit else GRAY)
        gray = (np.clip(digit, 0, 1) * 255).astype(np.uint8)
        image = Image.fromarray(gray).resize((8 * PIXEL, 8 * PIXEL), Image.NEAREST).convert("RGB")
        out.paste(image, (x + FRAME, y + FRAME))
    return out


def draw_sheet(cells: dict[SheetRow, dict[str, tuple[Image.Image, list[str]]]]) -> Image.Image:
    """Rows of tiles with their captions, a header and a legend."""
    notes = {row: note_lines(row) for row in cells}
    width = LABEL_W + len(COLUMNS) * (TILE_W + PAD)
    height = HEADER_H + sum(TILE_H + CAPTION_H + len(lines) * NOTE_H + PAD for lines in notes.values())
    sheet = Image.new("RGB", (width, height + 3 * NOTE_H), "white")
    draw = ImageDraw.Draw(sheet)
    font, small = _font(16), _font(12)
    for c, column in enumerate(COLUMNS):
        x = LABEL_W + c * (TILE_W + PAD) + TILE_W // 2
        draw.text((x, HEADER_H // 2), f"{column}" + (" (node defaults)" if column != "stock" else " KSampler"),
                  fill=INK, font=font, anchor="mm")  # fmt: skip
    y = HEADER_H
    for row, columns in cells.items():
        family = "flow MMDiTs (SD3 family)" if row.family == "flow" else "EPS UNets (SD1.5 family)"
        draw.multiline_text((8, y + TILE_H // 2 - 18), row.title, fill=INK, font=font, anchor="lm")
        draw.multiline_text(
            (8, y + TILE_H // 2 + 22), f"{family}\neuler, {STEPS} steps", fill=(90, 90, 90), font=small, anchor="lm"
        )  # fmt: skip
        if _files(row)["metric"] == "prompt_accuracy":
            for line, digit in enumerate(PROMPT_DIGITS):
                draw.text((LABEL_W - 12, y + line * CELL + CELL // 2), str(digit), fill=(90, 90, 90), font=small,
                          anchor="mm")  # fmt: skip
        for c, column in enumerate(COLUMNS):
            x = LABEL_W + c * (TILE_W + PAD)
            image, lines = columns[column]
            sheet.paste(image, (x, y))
            for k, line in enumerate(lines):
                draw.text((x, y + TILE_H + 4 + 16 * k), line, fill=INK, font=small)
        for k, line in enumerate(notes[row]):
            draw.text(
                (LABEL_W, y + TILE_H + CAPTION_H + 2 + k * NOTE_H), line, fill=(150, 60, 20), font=small
            )
        y += TILE_H + CAPTION_H + len(notes[row]) * NOTE_H + PAD
    legend = (
        "Green frame: the judge reads a digit 0-4 (class-ratio rows; the data has 47%, the strong model less) "
        "or the prompt's digit (condition rows; prompts 0, 3, 5, 8 down the lines).",
        "Figures: the benchmark's 500 samples per setting (benchmarks/learned.py), 95% intervals; tiles: the "
        "first samples of the same seeds, drawn now. Frechet: distance to real digits, lower is better.",
        FLOW_CONDITION_NOTE,
    )
    for k, line in enumerate(legend):
        draw.text((8, y + k * NOTE_H), line, fill=INK, font=small)
    return sheet


# -- running ----------------------------------------------------------------------------------------


def sample_row(
    server: ComfyServer, row: SheetRow, defaults: dict[str, Any]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Column -> (digits (N, 8, 8) as the judge reads them, hits (N,) bool) from the server."""
    import judges

    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for column in COLUMNS:
        digits, asked = [], []
        for text, digit, seed, batch in jobs(row):
            if column == "stock":
                graph = stock_graph(row, text, seed, batch)
            else:
                graph = reflection_graph(row, column, defaults, text, seed, batch)
            images = np.stack(server.run(graph).images["9"]).astype(np.float32) / 255.0
            digits.append(judges.image_to_digit(images))
            asked += [digit] * batch
        read = np.concatenate(digits)
        pred = judges.predict(read)
        if asked[0] is None:
            hits = np.isin(pred, _files(row)["minority"])
        else:
            hits = pred == np.array(asked)
        out[column] = (read, hits)
    return out


def make_sheet(
    server: ComfyServer, out: Path, log: Any = print, rows: tuple[SheetRow, ...] = SHEET_ROWS
) -> dict[SheetRow, dict[str, np.ndarray]]:
    """Sample `rows` on `server` (the learned models installed) and write the sheet to `out`; returns each
    row's and column's hits, sample by sample."""
    info = server.object_info()
    if "W2SDKSampler" not in info:
        raise RuntimeError("the pack's nodes are not loaded on this server: see its log for the import error")
    defaults = node_defaults(info)
    cells: dict[SheetRow, dict[str, tuple[Image.Image, list[str]]]] = {}
    hits_of: dict[SheetRow, dict[str, np.ndarray]] = {}
    for row in rows:
        bench = measured(row)
        samples = sample_row(server, row, defaults)
        cells[row] = {
            column: (tile(read, hits), captions(column, bench[column], int(hits.sum()), len(hits)))
            for column, (read, hits) in samples.items()
        }
        log(f"comparison row {row.title.replace(chr(10), ' ')}: " + "; ".join(
            f"{column} {int(hits.sum())}/{len(hits)} in the tile, "
            f"{bench[column]['figures'][bench[column]['metric']][0]:.3f} measured"
            for column, (_, hits) in samples.items()
        ))  # fmt: skip
        hits_of[row] = {column: hits for column, (_, hits) in samples.items()}
    draw_sheet(cells).save(out)
    return hits_of
