"""Build the example workflows (UI format) and their .jpg thumbnails in the real frontend.

    .venv/bin/python workflows/build.py                 # every workflow
    .venv/bin/python workflows/build.py W2SD_flow_model_SD3

Each graph is made as a user makes it: `LiteGraph.createNode`, links, widget values through the
widgets' own setters, then `app.graph.serialize()`; the thumbnail is a screenshot of the graph, 512 px
wide. Needs the dev setup (`python3 tools/dev.py setup`: ComfyUI, playwright, Debian's Chromium).
Model names are the files users have; tests/e2e/test_workflows.py swaps them for the tiny test models.

The family workflows (Z-Image, Qwen-Image, Flux.1, Wan 2.2: tools/example_workflows.py) follow ComfyUI
0.29.0's templates and are built on it; which ComfyUI is the server's choice (W2SD_COMFYUI_VERSION):

    W2SD_COMFYUI_VERSION=0.29.0 .venv-0.29.0/bin/python workflows/build.py W2SD_Wan2.2_two_stage
"""

from __future__ import annotations

import io
import json
import sys
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(REPO / "tests"), str(REPO / "tools")]

from browser.comfy_page import clear, open_app, set_widget  # noqa: E402
from comfy_server import ComfyServer, comfyui_dir  # noqa: E402
from conftest import CHROMIUM, CHROMIUM_FLAGS  # noqa: E402
from example_workflows import FAMILY_WORKFLOWS, core_version  # noqa: E402

SDXL = "sd_xl_base_1.0.safetensors"
SD15 = "v1-5-pruned-emaonly.safetensors"
DREAMSHAPER = "dreamshaper_8.safetensors"
SD3 = "sd3_medium_incl_clips_t5xxlfp8.safetensors"
XL_LORA = "xl_more_art-full_v1.safetensors"  # the official code's LoRA (xlMoreArt Full)
SD15_LORA = "add_detail.safetensors"  # Detail Tweaker
CANNY_CONTROLNET = "control_v11p_sd15_canny.safetensors"
# The newer families' files as ComfyUI 0.29.0's own templates name them (blueprints/).
Z_IMAGE_TURBO = "z_image_turbo_bf16.safetensors"
QWEN3_4B = "qwen_3_4b.safetensors"
FLUX_AE = "ae.safetensors"  # the Flux.1 VAE, also Z-Image's
QWEN_IMAGE = "qwen_image_fp8_e4m3fn.safetensors"
QWEN_IMAGE_EDIT = "qwen_image_edit_2511_bf16.safetensors"
QWEN_VL_7B = "qwen_2.5_vl_7b_fp8_scaled.safetensors"
QWEN_IMAGE_VAE = "qwen_image_vae.safetensors"
FLUX_DEV = "flux1-dev.safetensors"
CLIP_L = "clip_l.safetensors"
T5XXL = "t5xxl_fp16.safetensors"
WAN22_HIGH = "wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors"
WAN22_LOW = "wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors"
UMT5XXL = "umt5_xxl_fp8_e4m3fn_scaled.safetensors"
WAN_VAE = "wan_2.1_vae.safetensors"

PROMPT_XL = "a cozy wooden cabin in a snowy pine forest at dusk, warm light in the windows, highly detailed"
PROMPT_15 = "a red fox sitting in a meadow of wild flowers, morning light, detailed fur"
RAW_PROMPT = "a cat wearing a hat"
REFINED_PROMPT = (
    "a fluffy ginger cat wearing a small red knitted wool hat, sitting on a sunny windowsill, "
    "soft morning light, detailed fur, shallow depth of field, photograph"
)
NEGATIVE = "blurry, low quality, deformed"
SEED = 42

VIEW = {"width": 1600, "height": 1000}
THUMB_WIDTH = 512
COL_GAP, ROW_GAP, MARGIN = 40, 20, 40
WIDTH_ROOM = 30
W2SD_COLOR = {"color": "#223322", "bgcolor": "#335533"}  # litegraph's "green": W2SD nodes stand out
PAPER = {"mode": "W2SD", "window": "steps", "reflect_steps": -1, "inversion": "explicit"}
MEASURED = {
    "mode": "W2SD",
    "window": "percent",
    "start_percent": 0.0,
    "end_percent": 0.5,
    "inversion": "fixed_point",
    "inversion_iters": 1,
}
# Few-step and flow models: the first half of the schedule reflected, warm_start inversion (the node's
# default; exact when strong == weak at any step size, so it suits few large steps).
FIRST_HALF = {
    "mode": "W2SD",
    "window": "percent",
    "start_percent": 0.0,
    "end_percent": 0.5,
    "inversion": "warm_start",
    "inversion_iters": 0,
}
WAN_NEGATIVE = (  # the official Wan 2.2 templates' negative prompt, in English (UMT5 reads both)
    "vivid colors, overexposed, static, blurry details, subtitles, style, artwork, painting, still frame, "
    "grey overall, worst quality, low quality, JPEG artifacts, ugly, mutilated, extra fingers, poorly drawn "
    "hands, poorly drawn face, deformed, disfigured, malformed limbs, fused fingers, motionless picture, "
    "cluttered background, three legs, many people in the background, walking backwards"
)
IMAGE_SIZE = (260, 290)
LOAD_IMAGE_SIZE = (240, 330)  # frontend 1.47 makes room for the image's preview
PROMPT_SIZE = (240, 120)
PLOT_TITLE = "Reflection plot (flat zero = the pair does nothing)"


@dataclass(frozen=True)
class Out:
    node: int
    slot: int


@dataclass
class Node:
    graph: Graph
    id: int
    type: str

    def out(self, name: str) -> Out:
        slot = self.graph.page.evaluate(
            "([id, name]) => app.graph.getNodeById(id).findOutputSlot(name)", [self.id, name]
        )
        if slot < 0:
            raise KeyError(f"{self.type} has no output {name!r}")
        return Out(self.id, slot)


@dataclass
class Graph:
    """A graph built in the page: nodes go into columns, laid out left to right by `layout()`."""

    page: Any
    columns: dict[int, list[int]] = field(default_factory=dict)

    def add(self, node_type: str, col: int, title: str | None = None, **values: Any) -> Node:
        node_id = self.page.evaluate(
            """([type, title]) => {
              const node = LiteGraph.createNode(type);
              if (!node) throw new Error(`unknown node type ${type}`);
              if (title) node.title = title;
              app.graph.add(node);
              return node.id;
            }""",
            [node_type, title],
        )
        self.columns.setdefault(col, []).append(node_id)
        if node_type.startswith("W2SD"):
            self.page.evaluate(
                "([id, c]) => Object.assign(app.graph.getNodeById(id), c)", [node_id, W2SD_COLOR]
            )
        for name, value in values.items():
            if isinstance(value, Out):
                ok = self.page.evaluate(
                    """([src, slot, dst, name]) => {
                      const a = app.graph.getNodeById(src), b = app.graph.getNodeById(dst);
                      const input = b.findInputSlot(name);
                      return input >= 0 && !!a.connect(slot, b, input);
                    }""",
                    [value.node, value.slot, node_id, name],
                )
                if not ok:
                    raise ValueError(f"cannot link {value} to {node_type}.{name}")
            else:
                set_widget(self.page, node_id, name, value)
        return Node(self, node_id, node_type)

    def note(self, col: int, title: str, text: str, size: tuple[int, int] = (320, 300)) -> Node:
        return self.resize(self.add("Note", col, title=title, text=text), size)

    def resize(self, node: Node, size: tuple[int, int]) -> Node:
        self.page.evaluate(
            "([id, size]) => { app.graph.getNodeById(id).size = size; }", [node.id, list(size)]
        )
        return node

    def layout(self) -> None:
        """Columns left to right, nodes stacked top to bottom in the order they were added; each column
        as wide as its widest node, with room for frontend 1.47, which grows a node to fit its title and
        measures widgets a little wider than the frontend this builds in."""
        self.page.evaluate(
            """([columns, colGap, rowGap, margin, room]) => {
              const ctx = app.canvas.canvas.getContext("2d");
              const titleWidth = (node) => {
                ctx.font = node.titleFontStyle ?? `${LiteGraph.NODE_TEXT_SIZE}px Arial`;
                return ctx.measureText(node.title).width + 1.33 * LiteGraph.NODE_TITLE_HEIGHT + room;
              };
              let x = margin;
              for (const ids of columns) {
                const nodes = ids.map((id) => app.graph.getNodeById(id));
                const width = Math.ceil(Math.max(...nodes.map((n) => Math.max(n.size[0], n.computeSize()[0] + room, titleWidth(n)))));
                let y = margin;
                for (const node of nodes) {
                  node.pos = [x, y];
                  node.size = [width, node.size[1]];
                  y += node.size[1] + rowGap + LiteGraph.NODE_TITLE_HEIGHT;
                }
                x += width + colGap;
              }
              app.graph.setDirtyCanvas(true, true);
            }""",
            [[self.columns[c] for c in sorted(self.columns)], COL_GAP, ROW_GAP, MARGIN, WIDTH_ROOM],
        )


# --- shared pieces ------------------------------------------------------------------------------------


def sampler_settings(
    steps: int, cfg: float, sampler: str, scheduler: str, **reflection: Any
) -> dict[str, Any]:
    return {
        "seed": SEED, "control_after_generate": "fixed", "steps": steps, "cfg": cfg,
        "sampler_name": sampler, "scheduler": scheduler, **reflection,
    }  # fmt: skip


def decode_and_save(g: Graph, col: int, latent: Out, vae: Out, prefix: str, title: str | None = None) -> Node:
    decode = g.add("VAEDecode", col, samples=latent, vae=vae)
    save = g.add("SaveImage", col, title=title, images=decode.out("IMAGE"), filename_prefix=prefix)
    return g.resize(save, IMAGE_SIZE)


def w2sd_outputs(g: Graph, col: int, sampler: Node, vae: Out, prefix: str) -> None:
    decode_and_save(g, col, sampler.out("LATENT"), vae, prefix)
    g.resize(g.add("PreviewImage", col, title=PLOT_TITLE, images=sampler.out("reflection_plot")), IMAGE_SIZE)


def prompts(
    g: Graph, col: int, clip: Out, positive: str, negative: str | None, title: str = "Positive prompt"
) -> tuple[Node, Node]:
    """Positive and negative conditioning; negative None = the official code's empty, zeroed negative."""
    pos = g.resize(g.add("CLIPTextEncode", col, title=title, clip=clip, text=positive), PROMPT_SIZE)
    if negative is None:
        empty = g.add("CLIPTextEncode", col, title="Negative prompt (empty)", clip=clip, text="")
        g.resize(empty, PROMPT_SIZE)
        neg = g.add(
            "ConditioningZeroOut", col, title="Zeroed negative", conditioning=empty.out("CONDITIONING")
        )
    else:
        neg = g.resize(
            g.add("CLIPTextEncode", col, title="Negative prompt", clip=clip, text=negative), PROMPT_SIZE
        )
    return pos, neg


def latent(g: Graph, col: int, size: int, node_type: str = "EmptyLatentImage") -> Node:
    return g.add(node_type, col, width=size, height=size, batch_size=1)


# --- the workflows ------------------------------------------------------------------------------------


def lora_official_code(g: Graph) -> None:
    g.note(
        0,
        "W2SD: LoRA pair, official code settings",
        (
            "Weak-to-Strong Diffusion (arXiv 2502.00473) with one LoRA at three scales, as the authors' "
            "w2sd_lora.py runs it on SD-XL:\n"
            "- regular sampling steps: LoRA 0.8, cfg 5.5\n"
            "- reflection, strong denoise: LoRA +1.5, cfg 5.5\n"
            "- reflection, weak inversion: LoRA -1.5, cfg 1.0\n"
            "- 50 DDIM steps (ddim_uniform), every step but the last reflects (window = steps, reflect_steps = -1)\n"
            "- empty negative prompt, zeroed (ConditioningZeroOut)\n\n"
            "The LoRA-scale splitter shares one copy of the base weights (no re-patching between sides); the "
            "CFG-gap node stacked on it sets the side cfgs. The official code's LoRA is xlMoreArt Full "
            "(a DPO-style LoRA): pick your own file in lora_name.\n\n"
            "Cost: 50 + 2 x 49 = 148 model evaluations, about 3x a stock KSampler (the label on the sampler). "
            "inversion = reference reproduces the official code's weak-inversion formula exactly. "
            "The paper's text uses other side settings: see W2SD_LoRA_paper_text_SDXL."
        ),
    )
    ckpt = g.add("CheckpointLoaderSimple", 0, ckpt_name=SDXL)
    split = g.add(
        "W2SDLoraSplit", 1, model=ckpt.out("MODEL"), clip=ckpt.out("CLIP"), lora_name=XL_LORA,
        main_scale=0.8, strong_scale=1.5, weak_scale=-1.5,
    )  # fmt: skip
    gap = g.add("W2SDCFGGap", 1, pair=split.out("pair"), strong_cfg=5.5, weak_cfg=1.0)
    pos, neg = prompts(g, 1, split.out("clip"), PROMPT_XL, None)
    lat = latent(g, 0, 1024)
    sampler = g.add(
        "W2SDKSampler", 2, model=split.out("model"), positive=pos.out("CONDITIONING"),
        negative=neg.out("CONDITIONING"), latent_image=lat.out("LATENT"), pair=gap.out("pair"),
        **sampler_settings(50, 5.5, "ddim", "ddim_uniform", **PAPER),
    )  # fmt: skip
    w2sd_outputs(g, 3, sampler, ckpt.out("VAE"), "W2SD/lora_official_code")


def lora_paper_text(g: Graph) -> None:
    g.note(
        0,
        "W2SD: LoRA pair, paper text settings",
        (
            "The LoRA weight-difference setting as the paper's text describes it (Sec. 4, Appendix B): "
            "strong = LoRA at +0.8, weak = LoRA at -1.5, and both sides at cfg 1.0 during reflections, "
            "so only the weights differ; the regular steps use LoRA 0.8 at cfg 5.5. T = 50 DDIM steps, "
            "lambda = T - 1 (every step but the last reflects).\n\n"
            "A CFG gap cannot have equal cfgs, so the side cfgs come from a Weak/Strong Model Pair (strong_cfg = "
            "weak_cfg = 1.0) stacked on the LoRA-scale splitter.\n\n"
            "The authors' released code differs (LoRA +1.5 / -1.5, strong cfg 5.5, weak cfg 1.0): "
            "see W2SD_LoRA_official_code_SDXL. Pick your own LoRA in lora_name; the paper used xlMoreArt "
            "Full and personalised LoRAs."
        ),
    )
    ckpt = g.add("CheckpointLoaderSimple", 0, ckpt_name=SDXL)
    split = g.add(
        "W2SDLoraSplit", 1, model=ckpt.out("MODEL"), clip=ckpt.out("CLIP"), lora_name=XL_LORA,
        main_scale=0.8, strong_scale=0.8, weak_scale=-1.5,
    )  # fmt: skip
    pair = g.add(
        "W2SDModelPair", 1, title="Side cfg 1.0 / 1.0 (paper text)", pair=split.out("pair"),
        strong_cfg=1.0, weak_cfg=1.0,
    )  # fmt: skip
    pos, neg = prompts(g, 1, split.out("clip"), PROMPT_XL, None)
    lat = latent(g, 0, 1024)
    sampler = g.add(
        "W2SDKSampler", 2, model=split.out("model"), positive=pos.out("CONDITIONING"),
        negative=neg.out("CONDITIONING"), latent_image=lat.out("LATENT"), pair=pair.out("pair"),
        **sampler_settings(50, 5.5, "ddim", "ddim_uniform", **PAPER),
    )  # fmt: skip
    w2sd_outputs(g, 3, sampler, ckpt.out("VAE"), "W2SD/lora_paper_text")


def finetune_vs_base(g: Graph) -> None:
    g.note(
        0,
        "W2SD: fine-tuned vs base checkpoint",
        (
            "Weight difference with two checkpoints of one family (paper Table 1): strong = a full fine-tune "
            "(here DreamShaper 8), weak = its base (SD1.5). The fine-tune also takes the regular steps "
            "(the paper's M^s). Both must be the same family (SD1.5 with SD1.5, SDXL with SDXL, e.g. "
            "Juggernaut-XL with sd_xl_base_1.0).\n\n"
            "Paper text settings: 50 DDIM steps, cfg 5.5, every step but the last reflects, both sides at "
            "cfg 1.0 during reflections (the Model Pair's strong_cfg / weak_cfg; -1 = the sampler's cfg).\n\n"
            "The prompts are encoded once with the fine-tune's text encoder and used by both sides. The two "
            "models are loaded together, so this needs memory for both UNets."
        ),
    )
    strong = g.add("CheckpointLoaderSimple", 0, title="Strong: fine-tune", ckpt_name=DREAMSHAPER)
    weak = g.add("CheckpointLoaderSimple", 0, title="Weak: base model", ckpt_name=SD15)
    pos, neg = prompts(g, 1, strong.out("CLIP"), PROMPT_15, NEGATIVE)
    lat = latent(g, 1, 512)
    pair = g.add(
        "W2SDModelPair", 1, strong_model=strong.out("MODEL"), weak_model=weak.out("MODEL"),
        strong_cfg=1.0, weak_cfg=1.0,
    )  # fmt: skip
    sampler = g.add(
        "W2SDKSampler", 2, model=strong.out("MODEL"), positive=pos.out("CONDITIONING"),
        negative=neg.out("CONDITIONING"), latent_image=lat.out("LATENT"), pair=pair.out("pair"),
        **sampler_settings(50, 5.5, "ddim", "ddim_uniform", **PAPER),
    )  # fmt: skip
    w2sd_outputs(g, 3, sampler, strong.out("VAE"), "W2SD/finetune_vs_base")


def cfg_gap(g: Graph) -> None:
    g.note(
        0,
        "W2SD: CFG gap (Z-Sampling)",
        (
            "Condition difference through guidance (paper Table 7; Z-Sampling is this special case): one "
            "model, strong side at a high cfg (5.5), weak side at cfg 0 (the unconditional prediction alone, "
            "one pass). No second model, no extra memory.\n\n"
            "Settings: 50 DDIM steps, cfg 5.5, every step but the last reflects. Cost: 148 model evaluations "
            "for 50 steps; the weak side is one pass each.\n\n"
            "A known critique: a CFG-gap zigzag can act like plain CFG at about 2w - 1 (here ~10) for 3x the "
            "compute. W2SD_comparison_stock_matched_CFG_equal_NFE_SDXL renders those baselines side by side."
        ),
    )
    ckpt = g.add("CheckpointLoaderSimple", 0, ckpt_name=SDXL)
    gap = g.add("W2SDCFGGap", 1, strong_cfg=5.5, weak_cfg=0.0)
    pos, neg = prompts(g, 1, ckpt.out("CLIP"), PROMPT_XL, NEGATIVE)
    lat = latent(g, 0, 1024)
    sampler = g.add(
        "W2SDKSampler", 2, model=ckpt.out("MODEL"), positive=pos.out("CONDITIONING"),
        negative=neg.out("CONDITIONING"), latent_image=lat.out("LATENT"), pair=gap.out("pair"),
        **sampler_settings(50, 5.5, "ddim", "ddim_uniform", **PAPER),
    )  # fmt: skip
    w2sd_outputs(g, 3, sampler, ckpt.out("VAE"), "W2SD/cfg_gap")


def refined_vs_raw_prompt(g: Graph) -> None:
    g.note(
        0,
        "W2SD: refined vs raw prompt",
        (
            "Condition difference through the prompt (paper Table 7): strong = a refined, detailed prompt "
            "(e.g. written by an LLM), weak = the raw prompt. The refined prompt also drives the regular "
            "steps; the Model Pair gives the weak side the raw prompt. Reflections move each step along "
            "the difference between the two prompts.\n\n"
            "Settings: 50 DDIM steps, cfg 5.5, every step but the last reflects; both sides use the sampler's "
            "cfg (-1). One model, so no extra memory."
        ),
    )
    ckpt = g.add("CheckpointLoaderSimple", 0, ckpt_name=SD15)
    pos, neg = prompts(g, 1, ckpt.out("CLIP"), REFINED_PROMPT, NEGATIVE, title="Strong: refined prompt")
    raw = g.add("CLIPTextEncode", 1, title="Weak: raw prompt", clip=ckpt.out("CLIP"), text=RAW_PROMPT)
    g.resize(raw, PROMPT_SIZE)
    lat = latent(g, 0, 512)
    pair = g.add("W2SDModelPair", 1, weak_positive=raw.out("CONDITIONING"))
    sampler = g.add(
        "W2SDKSampler", 2, model=ckpt.out("MODEL"), positive=pos.out("CONDITIONING"),
        negative=neg.out("CONDITIONING"), latent_image=lat.out("LATENT"), pair=pair.out("pair"),
        **sampler_settings(50, 5.5, "ddim", "ddim_uniform", **PAPER),
    )  # fmt: skip
    w2sd_outputs(g, 3, sampler, ckpt.out("VAE"), "W2SD/refined_vs_raw_prompt")


def controlnet_gap(g: Graph) -> None:
    g.note(
        0,
        "W2SD: ControlNet gap",
        (
            "Pipeline difference (paper Sec. 4, Fig. 10): the strong side is the pipeline with a ControlNet, "
            "the weak side the plain one. The ControlNet conditioning drives the regular steps and the strong "
            "denoise; the Model Pair gives the weak inversion the plain prompts. Reflections pull the image "
            "towards the control (here Canny edges of example.png: load your own image).\n\n"
            "Paper settings: control strength 1.0, 50 DDIM steps, cfg 5.5, every step but the last reflects, "
            "both sides at cfg 0.5 during reflections so that only the ControlNet differs.\n\n"
            "Any model patch or conditioning (IP-Adapter, a style LoRA, ...) can stand on the strong side the "
            "same way."
        ),
        size=(320, 240),
    )
    ckpt = g.add("CheckpointLoaderSimple", 0, ckpt_name=SD15)
    image = g.resize(g.add("LoadImage", 0, image="example.png"), LOAD_IMAGE_SIZE)
    canny = g.add("Canny", 0, image=image.out("IMAGE"), low_threshold=0.4, high_threshold=0.8)
    cnet = g.add("ControlNetLoader", 1, control_net_name=CANNY_CONTROLNET)
    pos, neg = prompts(
        g, 1, ckpt.out("CLIP"), "a modern glass house on a cliff above the sea, sunset", NEGATIVE
    )
    apply = g.add(
        "ControlNetApplyAdvanced", 1, title="Strong: with ControlNet", positive=pos.out("CONDITIONING"),
        negative=neg.out("CONDITIONING"), control_net=cnet.out("CONTROL_NET"), image=canny.out("IMAGE"),
        strength=1.0, start_percent=0.0, end_percent=1.0,
    )  # fmt: skip
    pair = g.add(
        "W2SDModelPair", 1, title="Weak: plain prompts, side cfg 0.5", weak_positive=pos.out("CONDITIONING"),
        weak_negative=neg.out("CONDITIONING"), strong_cfg=0.5, weak_cfg=0.5,
    )  # fmt: skip
    lat = latent(g, 2, 512)
    sampler = g.add(
        "W2SDKSampler", 2, model=ckpt.out("MODEL"), positive=apply.out("positive"),
        negative=apply.out("negative"), latent_image=lat.out("LATENT"), pair=pair.out("pair"),
        **sampler_settings(50, 5.5, "ddim", "ddim_uniform", **PAPER),
    )  # fmt: skip
    w2sd_outputs(g, 3, sampler, ckpt.out("VAE"), "W2SD/controlnet_gap")


def cumulative(g: Graph) -> None:
    g.note(
        0,
        "W2SD: cumulative (LoRA + CFG gap)",
        (
            "Differences add up (paper Sec. 4, Table 6): stack a CFG gap on a LoRA pair. Strong = LoRA +0.8 "
            "at cfg 5.5, weak = LoRA -1.5 at cfg 0; regular steps LoRA 0.8 at cfg 5.5. Each pair node "
            "overrides only what it sets, so the order of the stack is the order of the overrides.\n\n"
            "Here with a detail LoRA on SD1.5 (pick your own). The paper's best cumulative result stacks a "
            "fine-tune pair (Juggernaut-XL vs SD-XL) with the same CFG gap: replace the LoRA-scale splitter "
            "with a Weak/Strong Model Pair to get it.\n\n"
            "Settings: 50 DDIM steps, cfg 5.5, every step but the last reflects."
        ),
    )
    ckpt = g.add("CheckpointLoaderSimple", 0, ckpt_name=SD15)
    split = g.add(
        "W2SDLoraSplit", 1, model=ckpt.out("MODEL"), clip=ckpt.out("CLIP"), lora_name=SD15_LORA,
        main_scale=0.8, strong_scale=0.8, weak_scale=-1.5,
    )  # fmt: skip
    gap = g.add("W2SDCFGGap", 1, pair=split.out("pair"), strong_cfg=5.5, weak_cfg=0.0)
    pos, neg = prompts(g, 1, split.out("clip"), PROMPT_15, NEGATIVE)
    lat = latent(g, 0, 512)
    sampler = g.add(
        "W2SDKSampler", 2, model=split.out("model"), positive=pos.out("CONDITIONING"),
        negative=neg.out("CONDITIONING"), latent_image=lat.out("LATENT"), pair=gap.out("pair"),
        **sampler_settings(50, 5.5, "ddim", "ddim_uniform", **PAPER),
    )  # fmt: skip
    w2sd_outputs(g, 3, sampler, ckpt.out("VAE"), "W2SD/cumulative")


def flow_model(g: Graph) -> None:
    g.note(
        0,
        "W2SD: a flow model (SD3)",
        (
            "W2SD works in sigma space, so rectified-flow models (SD3, SD3.5) use the same nodes: the "
            "reflection is an Euler step down with the strong side and back up with the weak side.\n\n"
            "Here: SD3 medium (with its text encoders in the checkpoint), ModelSamplingSD3 shift 3, 28 steps "
            "dpmpp_2m / sgm_uniform at cfg 4.5, a CFG gap 4.5 / 0 as the pair, and the first half of the "
            "steps reflected (window = percent, 0 to 0.5): late, low-noise reflections add little and can "
            "sharpen what the sides disagree on in fine detail. Any sampler works: the reflection wraps it.\n\n"
            "Use EmptySD3LatentImage (16 latent channels) for SD3 models."
        ),
    )
    ckpt = g.add("CheckpointLoaderSimple", 0, ckpt_name=SD3)
    shift = g.add("ModelSamplingSD3", 1, model=ckpt.out("MODEL"), shift=3.0)
    gap = g.add("W2SDCFGGap", 1, strong_cfg=4.5, weak_cfg=0.0)
    pos, neg = prompts(
        g, 1, ckpt.out("CLIP"), "a glass sphere on a mossy stone in a misty forest, macro photo", NEGATIVE
    )
    lat = latent(g, 0, 1024, "EmptySD3LatentImage")
    sampler = g.add(
        "W2SDKSampler", 2, model=shift.out("MODEL"), positive=pos.out("CONDITIONING"),
        negative=neg.out("CONDITIONING"), latent_image=lat.out("LATENT"), pair=gap.out("pair"),
        **sampler_settings(28, 4.5, "dpmpp_2m", "sgm_uniform", **MEASURED),
    )  # fmt: skip
    w2sd_outputs(g, 3, sampler, ckpt.out("VAE"), "W2SD/flow_model_sd3")


def sampler_custom_advanced(g: Graph) -> None:
    g.note(
        0,
        "W2SD: guider for SamplerCustomAdvanced",
        (
            "The W2SD Guider is a GUIDER: use it with SamplerCustomAdvanced and any SAMPLER / SIGMAS node "
            "(SDE and ancestral samplers, custom schedules, split sigmas for two-stage graphs). The window "
            "is taken over the SIGMAS it is given.\n\n"
            "Here: dpmpp_2m_sde with 30 karras steps, cfg 5.5, a CFG gap 5.5 / 0 as the pair, the first half "
            "of the steps reflected. equal_budget is a KSampler-only option (a guider does not set the step "
            "count).\n\n"
            "Swap the CFG gap for any pair node (LoRA split, Model Pair) or a stack of them."
        ),
    )
    ckpt = g.add("CheckpointLoaderSimple", 0, ckpt_name=SD15)
    pos, neg = prompts(g, 1, ckpt.out("CLIP"), PROMPT_15, NEGATIVE)
    lat = latent(g, 0, 512)
    gap = g.add("W2SDCFGGap", 0, strong_cfg=5.5, weak_cfg=0.0)
    guider = g.add(
        "W2SDGuider", 1, model=ckpt.out("MODEL"), positive=pos.out("CONDITIONING"),
        negative=neg.out("CONDITIONING"), pair=gap.out("pair"), cfg=5.5, **MEASURED,
    )  # fmt: skip
    noise = g.add("RandomNoise", 2, noise_seed=SEED, control_after_generate="fixed")
    select = g.add("KSamplerSelect", 2, sampler_name="dpmpp_2m_sde")
    sigmas = g.add("BasicScheduler", 2, model=ckpt.out("MODEL"), scheduler="karras", steps=30, denoise=1.0)
    sampler = g.add(
        "SamplerCustomAdvanced", 2, noise=noise.out("NOISE"), guider=guider.out("GUIDER"),
        sampler=select.out("SAMPLER"), sigmas=sigmas.out("SIGMAS"), latent_image=lat.out("LATENT"),
    )  # fmt: skip
    decode_and_save(g, 3, sampler.out("output"), ckpt.out("VAE"), "W2SD/sampler_custom_advanced")


def comparison(g: Graph) -> None:
    steps, reflected = 30, 15
    nfe = steps + 3 * reflected  # MEASURED: a strong step, a weak inversion and 1 fixed-point refinement each
    g.note(
        0,
        "W2SD against fair baselines",
        (
            "Four images from one seed, side by side (the Save Image nodes on the right, 1 and 2 in the first "
            "column, 3 and 4 in the second):\n"
            f"1. stock KSampler, cfg 5.5, {steps} steps\n"
            f"2. stock, matched CFG: cfg 10 (about 2w - 1 for w = 5.5): a CFG-gap zigzag has been argued to act "
            "like plain CFG at 2w - 1\n"
            f"3. stock, equal NFE: {nfe} steps = T + 3 x lambda, the model evaluations W2SD spends\n"
            f"4. W2SD with a CFG gap 5.5 / 0, {steps} steps, the first {reflected} reflected, fixed-point "
            f"inversion with 1 iteration (NFE {nfe})\n\n"
            "If W2SD only matches 2 or 3, the pair is not adding anything for this prompt. "
            "Try your own pair (LoRA split, fine-tune vs base) in place of the CFG gap.\n"
            "Filenames: W2SD_compare/1_stock ... 4_w2sd."
        ),
        size=(320, 260),
    )
    ckpt = g.add("CheckpointLoaderSimple", 0, ckpt_name=SDXL)
    pos, neg = prompts(g, 0, ckpt.out("CLIP"), PROMPT_XL, NEGATIVE)
    lat = latent(g, 0, 1024)
    common = {
        "model": ckpt.out("MODEL"), "positive": pos.out("CONDITIONING"),
        "negative": neg.out("CONDITIONING"), "latent_image": lat.out("LATENT"),
    }  # fmt: skip
    runs: list[tuple[str, str, Node]] = []
    for title, prefix, cfg, n in (
        (f"1. Stock: cfg 5.5, {steps} steps", "1_stock", 5.5, steps),
        (f"2. Stock, matched CFG: cfg 10, {steps} steps", "2_stock_matched_cfg", 10.0, steps),
        (
            f"3. Stock, equal NFE: cfg 5.5, {nfe} steps",
            "3_stock_equal_nfe",
            5.5,
            nfe,
        ),
    ):
        k = g.add("KSampler", 1, title=title, **common, **sampler_settings(n, cfg, "euler", "normal"))
        runs.append((title, prefix, k))
    gap = g.add("W2SDCFGGap", 2, strong_cfg=5.5, weak_cfg=0.0)
    w2sd_title = f"4. W2SD: CFG gap 5.5 / 0, {steps} steps, {reflected} reflected"
    w2sd = g.add(
        "W2SDKSampler", 2, title=w2sd_title, pair=gap.out("pair"), **common,
        **sampler_settings(steps, 5.5, "euler", "normal", **MEASURED),
    )  # fmt: skip
    runs.append((w2sd_title, "4_w2sd", w2sd))
    for i, (title, prefix, k) in enumerate(runs):
        decode = g.add("VAEDecode", 3 + i // 2, samples=k.out("LATENT"), vae=ckpt.out("VAE"))
        save = g.add(
            "SaveImage",
            3 + i // 2,
            title=title,
            images=decode.out("IMAGE"),
            filename_prefix=f"W2SD_compare/{prefix}",
        )
        g.resize(save, (IMAGE_SIZE[0], 200))


def not_run_here(family: str, encoder: str) -> str:
    return (
        f"\n\nThe pack's tests convert this workflow against ComfyUI 0.29.0 but do not run it: {family}'s "
        f"text encoder ({encoder}) has no tiny form in the core's loaders."
    )


def z_image(g: Graph) -> None:
    g.note(
        0,
        "W2SD: Z-Image Turbo, CFG gap",
        (
            "Z-Image Turbo as ComfyUI's template runs it (UNETLoader, Qwen3-4B through CLIPLoader type "
            "lumina2, the Flux VAE, ModelSamplingAuraFlow shift 3, 8 steps res_multistep / simple, cfg 1, "
            "zeroed empty negative), with a CFG gap as the pair: strong cfg 2.5, weak cfg 1.\n\n"
            "Turbo is distilled to run at cfg 1, so the usual 5.5 / 0 gap is far too strong: the strong side "
            "goes only a little above (2-3) and the weak side is cfg 1, the prediction Turbo is made for "
            "(one pass). The regular steps stay at cfg 1. The first half of the steps reflects "
            "(4 of 8, warm_start inversion)." + not_run_here("Z-Image", "Qwen3-4B")
        ),
        size=(320, 330),
    )
    unet = g.add("UNETLoader", 0, unet_name=Z_IMAGE_TURBO, weight_dtype="default")
    clip = g.add("CLIPLoader", 0, clip_name=QWEN3_4B, type="lumina2", device="default")
    vae = g.add("VAELoader", 0, vae_name=FLUX_AE)
    shift = g.add("ModelSamplingAuraFlow", 1, model=unet.out("MODEL"), shift=3.0)
    pos, neg = prompts(g, 1, clip.out("CLIP"), PROMPT_XL, None)
    lat = latent(g, 1, 1024, "EmptySD3LatentImage")
    gap = g.add("W2SDCFGGap", 2, title="CFG gap 2.5 / 1 (Turbo)", strong_cfg=2.5, weak_cfg=1.0)
    sampler = g.add(
        "W2SDKSampler", 2, model=shift.out("MODEL"), positive=pos.out("CONDITIONING"),
        negative=neg.out("CONDITIONING"), latent_image=lat.out("LATENT"), pair=gap.out("pair"),
        **sampler_settings(8, 1.0, "res_multistep", "simple", **FIRST_HALF),
    )  # fmt: skip
    w2sd_outputs(g, 3, sampler, vae.out("VAE"), "W2SD/z_image_cfg_gap")


def qwen_image_prompt_pair(g: Graph) -> None:
    g.note(
        0,
        "W2SD: Qwen-Image, refined vs raw prompt",
        (
            "Qwen-Image as ComfyUI's template runs it without the Lightning LoRA (UNETLoader, Qwen2.5-VL-7B "
            "through CLIPLoader type qwen_image, the Qwen-Image VAE, ModelSamplingAuraFlow shift 3.1, "
            "20 steps euler / simple at cfg 4), with a prompt pair: the Weak/Strong Model Pair's "
            "strong_positive is the refined prompt (which also drives the regular steps), its weak_positive "
            "the raw one. Both sides use the sampler's cfg (-1). One model, no extra memory.\n\n"
            "The first half of the steps reflects (warm_start inversion)."
            + not_run_here("Qwen-Image", "Qwen2.5-VL-7B")
        ),
        size=(320, 330),
    )
    unet = g.add("UNETLoader", 0, unet_name=QWEN_IMAGE, weight_dtype="default")
    clip = g.add("CLIPLoader", 0, clip_name=QWEN_VL_7B, type="qwen_image", device="default")
    vae = g.add("VAELoader", 0, vae_name=QWEN_IMAGE_VAE)
    shift = g.add("ModelSamplingAuraFlow", 1, model=unet.out("MODEL"), shift=3.1)
    pos, neg = prompts(g, 1, clip.out("CLIP"), REFINED_PROMPT, NEGATIVE, title="Strong: refined prompt")
    raw = g.add("CLIPTextEncode", 1, title="Weak: raw prompt", clip=clip.out("CLIP"), text=RAW_PROMPT)
    g.resize(raw, PROMPT_SIZE)
    lat = latent(g, 1, 1328, "EmptySD3LatentImage")
    pair = g.add(
        "W2SDModelPair", 2, strong_positive=pos.out("CONDITIONING"), weak_positive=raw.out("CONDITIONING"),
    )  # fmt: skip
    sampler = g.add(
        "W2SDKSampler", 2, model=shift.out("MODEL"), positive=pos.out("CONDITIONING"),
        negative=neg.out("CONDITIONING"), latent_image=lat.out("LATENT"), pair=pair.out("pair"),
        **sampler_settings(20, 4.0, "euler", "simple", **FIRST_HALF),
    )  # fmt: skip
    w2sd_outputs(g, 3, sampler, vae.out("VAE"), "W2SD/qwen_image_prompt_pair")


def qwen_image_edit(g: Graph) -> None:
    g.note(
        0,
        "W2SD: Qwen-Image-Edit 2511, CFG gap",
        (
            "Qwen-Image-Edit 2511 as ComfyUI's template runs it (UNETLoader, Qwen2.5-VL-7B through "
            "CLIPLoader type qwen_image, the Qwen-Image VAE; the reference image scaled by "
            "FluxKontextImageScale, encoded by VAEEncode and given to both TextEncodeQwenImageEditPlus "
            "prompts; ModelSamplingAuraFlow 3.1, CFGNorm 1; 20 steps euler / simple at cfg 4) with a CFG gap "
            "as the pair: strong cfg 4, weak cfg 1 (the edit instruction and the reference without "
            "guidance, one pass).\n\n"
            "The first half of the steps reflects (warm_start inversion). Load your own image."
            + not_run_here("Qwen-Image-Edit", "Qwen2.5-VL-7B")
        ),
        size=(320, 330),
    )
    unet = g.add("UNETLoader", 0, unet_name=QWEN_IMAGE_EDIT, weight_dtype="default")
    clip = g.add("CLIPLoader", 0, clip_name=QWEN_VL_7B, type="qwen_image", device="default")
    vae = g.add("VAELoader", 0, vae_name=QWEN_IMAGE_VAE)
    image = g.resize(g.add("LoadImage", 1, image="example.png"), LOAD_IMAGE_SIZE)
    scaled = g.add("FluxKontextImageScale", 1, image=image.out("IMAGE"))
    encoded = g.add("VAEEncode", 1, pixels=scaled.out("IMAGE"), vae=vae.out("VAE"))
    edit = {"clip": clip.out("CLIP"), "vae": vae.out("VAE"), "image1": scaled.out("IMAGE")}
    pos = g.add(
        "TextEncodeQwenImageEditPlus", 2, title="Edit instruction", **edit,
        prompt="turn the scene into a watercolor painting, keep the composition",
    )  # fmt: skip
    neg = g.add("TextEncodeQwenImageEditPlus", 2, title="Negative", **edit, prompt="")
    shift = g.add("ModelSamplingAuraFlow", 2, model=unet.out("MODEL"), shift=3.1)
    norm = g.add("CFGNorm", 2, model=shift.out("MODEL"), strength=1.0)
    gap = g.add("W2SDCFGGap", 0, strong_cfg=4.0, weak_cfg=1.0)
    sampler = g.add(
        "W2SDKSampler", 3, model=norm.out("patched_model"), positive=pos.out("CONDITIONING"),
        negative=neg.out("CONDITIONING"), latent_image=encoded.out("LATENT"), pair=gap.out("pair"),
        **sampler_settings(20, 4.0, "euler", "simple", **FIRST_HALF),
    )  # fmt: skip
    # Four columns: frontend 1.47 fits a template to the window, readable up to about 1680 px wide.
    decode = g.add("VAEDecode", 1, samples=sampler.out("LATENT"), vae=vae.out("VAE"))
    plot = g.add("PreviewImage", 1, title=PLOT_TITLE, images=sampler.out("reflection_plot"))
    save = g.add("SaveImage", 3, images=decode.out("IMAGE"), filename_prefix="W2SD/qwen_image_edit")
    for node in (plot, save):
        g.resize(node, (IMAGE_SIZE[0], 200))


def flux_guidance_gap(g: Graph) -> None:
    g.note(
        0,
        "W2SD: Flux.1 dev, guidance gap",
        (
            "Flux.1 dev has no CFG: its guidance is a value in the conditioning (FluxGuidance), and the "
            "sampler runs at cfg 1 (one pass, the negative unused). So the gap is in the conditioning: the "
            "Weak/Strong Model Pair's strong_positive is the prompt at guidance 3.5 (which also drives the "
            "regular steps), its weak_positive the same prompt at guidance 1.0.\n\n"
            "Settings as ComfyUI's Flux.1 dev template: UNETLoader, DualCLIPLoader (CLIP-L + T5-XXL, type "
            "flux), the Flux VAE, 20 steps euler / simple, cfg 1, zeroed empty negative; the first half of "
            "the steps reflects (warm_start inversion)." + not_run_here("Flux.1", "T5-XXL")
        ),
        size=(320, 330),
    )
    unet = g.add("UNETLoader", 0, unet_name=FLUX_DEV, weight_dtype="default")
    clip = g.add("DualCLIPLoader", 0, clip_name1=CLIP_L, clip_name2=T5XXL, type="flux", device="default")
    vae = g.add("VAELoader", 0, vae_name=FLUX_AE)
    pos, neg = prompts(g, 1, clip.out("CLIP"), PROMPT_XL, None)
    strong = g.add(
        "FluxGuidance", 1, title="Strong: guidance 3.5", conditioning=pos.out("CONDITIONING"), guidance=3.5
    )
    weak = g.add(
        "FluxGuidance", 1, title="Weak: guidance 1.0", conditioning=pos.out("CONDITIONING"), guidance=1.0
    )
    lat = latent(g, 1, 1024, "EmptySD3LatentImage")
    pair = g.add(
        "W2SDModelPair", 2, strong_positive=strong.out("CONDITIONING"), weak_positive=weak.out("CONDITIONING"),
    )  # fmt: skip
    sampler = g.add(
        "W2SDKSampler", 2, model=unet.out("MODEL"), positive=strong.out("CONDITIONING"),
        negative=neg.out("CONDITIONING"), latent_image=lat.out("LATENT"), pair=pair.out("pair"),
        **sampler_settings(20, 1.0, "euler", "simple", **FIRST_HALF),
    )  # fmt: skip
    w2sd_outputs(g, 3, sampler, vae.out("VAE"), "W2SD/flux_guidance_gap")


WAN_STEPS, WAN_SWITCH = 20, 10


def wan22_two_stage(g: Graph) -> None:
    g.note(
        0,
        "W2SD: Wan 2.2 14B, two stages",
        (
            "Wan 2.2 14B text-to-video runs two experts on one schedule: the high-noise expert for steps "
            f"0-{WAN_SWITCH}, the low-noise expert for {WAN_SWITCH}-{WAN_STEPS} (ComfyUI's template without "
            "the 4-step LoRA: 20 steps euler / simple, cfg 3.5, ModelSamplingSD3 shift 8, 640 x 640, "
            "81 frames at 16 fps).\n\n"
            "W2SD reflects on the high-noise stage only, where the layout and motion are decided: W2SD "
            f"KSampler (Advanced) runs steps 0-{WAN_SWITCH} with return_with_leftover_noise enabled and a CFG "
            "gap as the pair (strong cfg 3.5, weak cfg 1: the prompt without guidance, one pass); its window "
            "is the first half of the whole 20-step schedule, i.e. every high-noise step (warm_start "
            "inversion). A stock KSamplerAdvanced finishes with the low-noise expert. CreateVideo + SaveVideo "
            "save the frames as a video." + not_run_here("Wan 2.2", "UMT5-XXL")
        ),
        size=(320, 240),
    )
    high = g.add("UNETLoader", 0, title="High-noise expert", unet_name=WAN22_HIGH, weight_dtype="default")
    low = g.add("UNETLoader", 0, title="Low-noise expert", unet_name=WAN22_LOW, weight_dtype="default")
    clip = g.add("CLIPLoader", 0, clip_name=UMT5XXL, type="wan", device="default")
    vae = g.add("VAELoader", 0, vae_name=WAN_VAE)
    high_shift = g.add("ModelSamplingSD3", 1, model=high.out("MODEL"), shift=8.0)
    low_shift = g.add("ModelSamplingSD3", 1, model=low.out("MODEL"), shift=8.0)
    pos, neg = prompts(
        g, 1, clip.out("CLIP"),
        "a red fox trotting through fresh snow in a pine forest, morning light, the camera follows it",
        WAN_NEGATIVE,
    )  # fmt: skip
    lat = g.add("EmptyHunyuanLatentVideo", 1, width=640, height=640, length=81, batch_size=1)
    gap = g.add("W2SDCFGGap", 0, strong_cfg=3.5, weak_cfg=1.0)
    common = {"positive": pos.out("CONDITIONING"), "negative": neg.out("CONDITIONING")}
    stage1 = g.add(
        "W2SDKSamplerAdvanced", 2, title="Stage 1: high noise + W2SD", model=high_shift.out("MODEL"),
        latent_image=lat.out("LATENT"), pair=gap.out("pair"), **common, add_noise="enable",
        noise_seed=SEED, control_after_generate="fixed", steps=WAN_STEPS, cfg=3.5, sampler_name="euler",
        scheduler="simple", start_at_step=0, end_at_step=WAN_SWITCH, return_with_leftover_noise="enable",
        **FIRST_HALF,
    )  # fmt: skip
    stage2 = g.add(
        "KSamplerAdvanced", 3, title="Stage 2: low noise", model=low_shift.out("MODEL"),
        latent_image=stage1.out("LATENT"), **common, add_noise="disable", noise_seed=SEED,
        control_after_generate="fixed", steps=WAN_STEPS, cfg=3.5, sampler_name="euler", scheduler="simple",
        start_at_step=WAN_SWITCH, end_at_step=10000, return_with_leftover_noise="disable",
    )  # fmt: skip
    decode = g.add("VAEDecode", 3, samples=stage2.out("LATENT"), vae=vae.out("VAE"))
    video = g.add("CreateVideo", 3, images=decode.out("IMAGE"), fps=16.0)
    g.resize(
        g.add("SaveVideo", 3, video=video.out("VIDEO"), filename_prefix="W2SD/wan22_two_stage",
              format="auto", codec="auto"),
        IMAGE_SIZE,
    )  # fmt: skip
    # Four columns: frontend 1.47 fits a template to the window, readable up to about 1680 px wide.
    plot = g.add("PreviewImage", 1, title=PLOT_TITLE, images=stage1.out("reflection_plot"))
    g.resize(plot, (IMAGE_SIZE[0], 200))


WORKFLOWS: dict[str, Callable[[Graph], None]] = {
    "W2SD_LoRA_official_code_SDXL": lora_official_code,
    "W2SD_LoRA_paper_text_SDXL": lora_paper_text,
    "W2SD_finetune_vs_base_SD15": finetune_vs_base,
    "W2SD_CFG_gap_Z-Sampling_SDXL": cfg_gap,
    "W2SD_refined_vs_raw_prompt_SD15": refined_vs_raw_prompt,
    "W2SD_ControlNet_gap_SD15": controlnet_gap,
    "W2SD_cumulative_LoRA_plus_CFG_SD15": cumulative,
    "W2SD_flow_model_SD3": flow_model,
    "W2SD_SamplerCustomAdvanced_guider_SD15": sampler_custom_advanced,
    "W2SD_comparison_stock_matched_CFG_equal_NFE_SDXL": comparison,
    "W2SD_Z-Image_CFG_gap": z_image,
    "W2SD_Qwen-Image_prompt_pair": qwen_image_prompt_pair,
    "W2SD_Qwen-Image_edit": qwen_image_edit,
    "W2SD_Flux_guidance_gap": flux_guidance_gap,
    "W2SD_Wan2.2_two_stage": wan22_two_stage,
}


CAPTIONS = {
    "W2SD_LoRA_official_code_SDXL": "W2SD · LoRA pair · official code settings · SDXL",
    "W2SD_LoRA_paper_text_SDXL": "W2SD · LoRA pair · paper text settings · SDXL",
    "W2SD_finetune_vs_base_SD15": "W2SD · fine-tune vs base checkpoint · SD1.5",
    "W2SD_CFG_gap_Z-Sampling_SDXL": "W2SD · CFG gap (Z-Sampling) · SDXL",
    "W2SD_refined_vs_raw_prompt_SD15": "W2SD · refined vs raw prompt · SD1.5",
    "W2SD_ControlNet_gap_SD15": "W2SD · ControlNet on the strong side · SD1.5",
    "W2SD_cumulative_LoRA_plus_CFG_SD15": "W2SD · cumulative: LoRA + CFG gap · SD1.5",
    "W2SD_flow_model_SD3": "W2SD · flow model · SD3",
    "W2SD_SamplerCustomAdvanced_guider_SD15": "W2SD Guider · SamplerCustomAdvanced · SD1.5",
    "W2SD_comparison_stock_matched_CFG_equal_NFE_SDXL": "W2SD vs stock, matched CFG, equal NFE · SDXL",
    "W2SD_Z-Image_CFG_gap": "W2SD · CFG gap for a cfg-1 Turbo model · Z-Image",
    "W2SD_Qwen-Image_prompt_pair": "W2SD · refined vs raw prompt · Qwen-Image",
    "W2SD_Qwen-Image_edit": "W2SD · CFG gap on an edit · Qwen-Image-Edit 2511",
    "W2SD_Flux_guidance_gap": "W2SD · guidance gap (FluxGuidance) · Flux.1 dev",
    "W2SD_Wan2.2_two_stage": "W2SD on the high-noise expert · Wan 2.2 14B",
}

# --- building, saving, thumbnails ---------------------------------------------------------------------


FIT_VIEW = """([margin, top]) => {
  const nodes = app.graph._nodes;
  const x0 = Math.min(...nodes.map((n) => n.pos[0])), y0 = Math.min(...nodes.map((n) => n.pos[1] - LiteGraph.NODE_TITLE_HEIGHT));
  const x1 = Math.max(...nodes.map((n) => n.pos[0] + n.size[0])), y1 = Math.max(...nodes.map((n) => n.pos[1] + n.size[1]));
  const canvas = app.canvas.canvas.getBoundingClientRect();
  const scale = Math.min(1, (canvas.width - 2 * margin) / (x1 - x0), (canvas.height - margin - top) / (y1 - y0));
  app.canvas.ds.scale = scale;
  app.canvas.ds.offset = [margin / scale - x0, top / scale - y0];
  app.canvas.setDirty(true, true);
  app.canvas.draw(true, true);
  const caption = document.getElementById("w2sd-caption")?.getBoundingClientRect().right ?? 0;
  const clip = { x: 0, y: 0, width: Math.max((x1 - x0) * scale + 2 * margin, caption + margin), height: (y1 - y0) * scale + top + margin };
  return { ds: { scale, offset: [...app.canvas.ds.offset] }, clip };
}"""

CAPTION = """(text) => {
  let el = document.getElementById("w2sd-caption");
  if (!el) {
    el = document.createElement("div");
    el.id = "w2sd-caption";
    el.style.cssText = "position: fixed; left: 24px; top: 14px; z-index: 10000; font: bold 40px Arial, sans-serif; color: #f0d27a; white-space: nowrap";
    document.body.append(el);
  }
  el.textContent = text;
}"""
CAPTION_HEIGHT = 80

# The view a workflow opens with (extra.ds): the whole graph in a 1280 x 800 browser window, clear of the
# frontend's side bar and top bar. Measured in Chromium, in canvas pixels: frontends 1.32 and 1.47 lay the
# canvas under the whole window with a 59 px side bar and a 78 px (1.32) or 38 px (1.47) top bar over
# it; 1.25 puts the canvas at (40, 40) beside its side bar, free down to 713 px and right to 1239 px. The
# area below is free on all three. The view is fixed (it does not follow the window), so it is made for a
# small one; tests/browser/test_workflows_browser.py checks it in Chromium on each tested frontend.
USER_AREA = {"left": 60, "top": 80, "right": 1239, "bottom": 713}
USER_MARGIN = 12
# Below this zoom the frontend draws nodes as boxes without text: 1.25 below its setting
# LiteGraph.Canvas.LowQualityRenderingZoomThreshold (0.6), 1.32 and 1.47 below LiteGraph.Canvas.MinFontSizeForLOD
# (8 px) / LiteGraph.NODE_TEXT_SIZE (14 px) / sqrt(devicePixelRatio) = 0.571 on a plain screen. So the
# layout is compact (small gaps, prompts, images and notes) to fit the window at 0.6 or more. Frontend
# 1.47 opens a template without its extra.ds, fitting the graph into 75% of the window instead: that is
# readable only for graphs up to about 1680 x 1050 (all but the comparison workflow).
READABLE_SCALE = 0.6

GRAPH_BOUNDS = """() => {
  const boxes = app.graph._nodes.map((n) => n.getBounding());
  return [Math.min(...boxes.map((b) => b[0])), Math.min(...boxes.map((b) => b[1])),
    Math.max(...boxes.map((b) => b[0] + b[2])), Math.max(...boxes.map((b) => b[1] + b[3]))];
}"""


def user_view(bounds: list[float]) -> dict[str, Any]:
    """extra.ds that shows `bounds` (graph units: x0, y0, x1, y1) inside USER_AREA."""
    x0, y0, x1, y1 = bounds
    left, top = USER_AREA["left"] + USER_MARGIN, USER_AREA["top"] + USER_MARGIN
    width, height = USER_AREA["right"] - USER_MARGIN - left, USER_AREA["bottom"] - USER_MARGIN - top
    scale = min(1.0, width / (x1 - x0), height / (y1 - y0))
    if scale < READABLE_SCALE:
        raise ValueError(
            f"the graph ({x1 - x0:.0f} x {y1 - y0:.0f}) fits the window at zoom {scale:.3f}, too small to "
            "draw text: make it smaller"
        )
    return {"scale": round(scale, 4), "offset": [round(left / scale - x0, 2), round(top / scale - y0, 2)]}


# Widgets that name a file the user must have, and where ComfyUI looks for it.
MODEL_FOLDERS = {
    "ckpt_name": "checkpoints",
    "lora_name": "loras",
    "control_net_name": "controlnet",
    "unet_name": "diffusion_models",
    "clip_name": "text_encoders",
    "clip_name1": "text_encoders",
    "clip_name2": "text_encoders",
    "vae_name": "vae",
}

MODEL_FILES = """(folders) => app.graph._nodes.flatMap((n) => (n.widgets ?? [])
  .filter((w) => w.name in folders)
  .map((w) => ({ title: n.title, widget: w.name, file: w.value, folder: folders[w.name] })))"""


def name_the_files(page: Any, graph: Graph) -> None:
    """Add to the workflow's note the model files it names: frontend 1.47 marks a loader whose file the
    user lacks as an error, and the user has to know what to pick instead."""
    files = page.evaluate(MODEL_FILES, MODEL_FOLDERS)
    note = page.evaluate("() => app.graph._nodes.find((n) => n.type === 'Note')?.id ?? null")
    if note is None or not files:
        raise ValueError("every workflow has a note and at least one model file")
    lines = [f"- {f['title']}: {f['file']} (models/{f['folder']})" for f in files]
    text = page.evaluate("(id) => app.graph.getNodeById(id).widgets[0].value", note)
    set_widget(
        page, note, "text",
        text + "\n\nModel files it names (pick your own in each loader; one you do not have is marked red "
        "and the workflow does not run):\n" + "\n".join(lines),
    )  # fmt: skip


# The frontend's own chrome (menus, tabs, side bar, minimap, toasts) is left out of thumbnails.
HIDE_CHROME = (
    ".splitter-overlay-root, .p-toast, .comfyui-body-top, .comfyui-body-bottom { display: none !important; }"
)


def build(page: Any, name: str) -> tuple[dict[str, Any], bytes]:
    """(UI workflow, JPEG thumbnail) of one workflow, built on an empty graph."""
    from PIL import Image

    clear(page)
    graph = Graph(page)
    WORKFLOWS[name](graph)
    name_the_files(page, graph)
    graph.layout()
    page.evaluate(CAPTION, CAPTIONS[name])
    fit = page.evaluate(FIT_VIEW, [30, CAPTION_HEIGHT])
    workflow = page.evaluate("() => JSON.parse(JSON.stringify(app.graph.serialize()))")
    # Stable across rebuilds: no random id.
    workflow["id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"w2sd-example/{name}"))
    workflow.setdefault("extra", {})["ds"] = user_view(page.evaluate(GRAPH_BOUNDS))
    page.wait_for_timeout(300)  # DOM widgets (prompt text boxes) follow the canvas on the next frame
    png = page.screenshot(clip=fit["clip"])
    image = Image.open(io.BytesIO(png)).convert("RGB")
    image = image.resize((THUMB_WIDTH, round(image.height * THUMB_WIDTH / image.width)), Image.LANCZOS)
    jpeg = io.BytesIO()
    image.save(jpeg, "JPEG", quality=85, optimize=True)
    return workflow, jpeg.getvalue()


def main(names: list[str]) -> None:
    from playwright.sync_api import sync_playwright

    unknown = sorted(set(names) - set(WORKFLOWS))
    if unknown:
        raise SystemExit(f"unknown workflows: {unknown}; known: {list(WORKFLOWS)}")
    core = core_version(comfyui_dir())
    too_new = [n for n in names or WORKFLOWS if n in FAMILY_WORKFLOWS and core < FAMILY_WORKFLOWS[n].core]
    if too_new and names:
        raise SystemExit(
            f"{too_new} follow ComfyUI 0.29.0's templates: build them on it (this file's docstring)"
        )
    if too_new:
        print(f"left out (they follow ComfyUI 0.29.0's templates; build them on it): {too_new}")
    names = [n for n in names or WORKFLOWS if n not in too_new]
    with tempfile.TemporaryDirectory() as base, ComfyServer(base) as server, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport=VIEW)
        open_app(page, server.url + "/", ("W2SDKSampler", "W2SDGuider"))
        page.evaluate(
            """async () => {
              await app.extensionManager.setting.set("Comfy.Graph.CanvasInfo", false);
              await app.extensionManager.setting.set("LiteGraph.Canvas.MinFontSizeForLOD", 1);
            }"""
        )
        page.add_style_tag(content=HIDE_CHROME)
        for name in names:
            workflow, thumbnail = build(page, name)
            (HERE / f"{name}.json").write_text(json.dumps(workflow, indent=2) + "\n")
            (HERE / f"{name}.jpg").write_bytes(thumbnail)
            print(f"{name}: {len(workflow['nodes'])} nodes, {len(workflow['links'])} links")
        browser.close()


if __name__ == "__main__":
    main(sys.argv[1:])
