"""Nodes that build a W2SD_PAIR: what differs between the strong and the weak side (paper Table 7).

Each takes an optional incoming pair and overrides only what it sets, so they stack (e.g. LoRA split
then CFG gap is the paper's cumulative setting).
"""

from __future__ import annotations

from typing import Any

import comfy.utils
import folder_paths

from .input_checks import check_declared, first_line
from .lora_scales import lora_clip, make_lora_scale_model
from .pair import PAIR_TYPE, Side, incoming_pair

STACK_TOOLTIP = "An optional pair to stack on: this node overrides only what it sets."
SIDE_CFG_TOOLTIP = "cfg of this side during reflections; -1 = the sampler's cfg. 0 evaluates the unconditional prediction only (one pass)."


def side_cfg(value: float) -> float | None:
    return None if value < 0 else float(value)


class W2SDModelPair:
    """Strong and weak sides from models and/or conditionings: fine-tune vs base, refined vs raw prompt, ControlNet or any patch on one side."""

    SEARCH_ALIASES = ["weak strong pair", "w2sd pair", "model pair"]

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {},
            "optional": {
                "strong_model": (
                    "MODEL",
                    {
                        "tooltip": "The strong side's model, e.g. a fine-tune (DreamShaper, Juggernaut-XL) or the model with a patch. Empty = the sampler's model."
                    },
                ),
                "weak_model": (
                    "MODEL",
                    {
                        "tooltip": "The weak side's model, e.g. the base (SD1.5, SDXL). Must be the same family as the strong one. Empty = the sampler's model."
                    },
                ),
                "strong_positive": (
                    "CONDITIONING",
                    {
                        "tooltip": "Strong side prompt, e.g. a refined/detailed prompt or one with ControlNet applied. Empty = the sampler's."
                    },
                ),
                "strong_negative": ("CONDITIONING",),
                "weak_positive": (
                    "CONDITIONING",
                    {
                        "tooltip": "Weak side prompt, e.g. the raw prompt without ControlNet. Empty = the sampler's."
                    },
                ),
                "weak_negative": ("CONDITIONING",),
                "strong_cfg": (
                    "FLOAT",
                    {
                        "default": -1.0,
                        "min": -1.0,
                        "max": 100.0,
                        "step": 0.1,
                        "round": 0.01,
                        "tooltip": SIDE_CFG_TOOLTIP,
                    },
                ),
                "weak_cfg": (
                    "FLOAT",
                    {
                        "default": -1.0,
                        "min": -1.0,
                        "max": 100.0,
                        "step": 0.1,
                        "round": 0.01,
                        "tooltip": SIDE_CFG_TOOLTIP,
                    },
                ),
                "pair": (PAIR_TYPE, {"tooltip": STACK_TOOLTIP}),
            },
        }

    RETURN_TYPES = (PAIR_TYPE,)
    RETURN_NAMES = ("pair",)
    FUNCTION = "build"
    CATEGORY = "sampling/W2SD"
    DESCRIPTION = "Weak/strong pair from two models (fine-tune vs base) and/or per-side conditioning (refined vs raw prompt, ControlNet on the strong side only)."

    @classmethod
    def VALIDATE_INPUTS(cls, input_types: dict | None = None, **values: Any) -> bool | str:
        return check_declared(cls.INPUT_TYPES(), input_types, **values) or True

    def build(
        self,
        strong_model=None,
        weak_model=None,
        strong_positive=None,
        strong_negative=None,
        weak_positive=None,
        weak_negative=None,
        strong_cfg=-1.0,
        weak_cfg=-1.0,
        pair=None,
    ):  # type: ignore[no-untyped-def]
        strong = Side(strong_model, strong_positive, strong_negative, side_cfg(strong_cfg))
        weak = Side(weak_model, weak_positive, weak_negative, side_cfg(weak_cfg))
        if strong.is_empty() and weak.is_empty():
            raise ValueError(
                "Weak/Strong Model Pair: nothing differs between the sides; connect a strong or weak model or conditioning, or set a side cfg."
            )
        return (incoming_pair(pair).stacked(strong, weak, "model pair"),)


class W2SDLoraSplit:
    """One LoRA at three scales on one copy of the base weights: main (regular steps), strong and weak."""

    SEARCH_ALIASES = ["w2sd lora", "lora scale split", "lora pair"]

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "model": ("MODEL",),
                "lora_name": (
                    folder_paths.get_filename_list("loras"),
                    {
                        "tooltip": "The LoRA whose positive/negative scales make the strong/weak pair (paper: a DPO or detail LoRA)."
                    },
                ),
                "main_scale": (
                    "FLOAT",
                    {
                        "default": 0.8,
                        "min": -10.0,
                        "max": 10.0,
                        "step": 0.05,
                        "tooltip": "LoRA scale for the regular sampling steps (official code: 0.8). Matches LoraLoader at this strength.",
                    },
                ),
                "strong_scale": (
                    "FLOAT",
                    {
                        "default": 1.5,
                        "min": -10.0,
                        "max": 10.0,
                        "step": 0.05,
                        "tooltip": "LoRA scale of the strong side (official code: 1.5; paper text: 0.8).",
                    },
                ),
                "weak_scale": (
                    "FLOAT",
                    {
                        "default": -1.5,
                        "min": -10.0,
                        "max": 10.0,
                        "step": 0.05,
                        "tooltip": "LoRA scale of the weak side (paper and code: -1.5).",
                    },
                ),
            },
            "optional": {
                "clip": (
                    "CLIP",
                    {
                        "tooltip": "Optional: the text encoder gets the LoRA at the main scale (prompts are encoded once, before sampling)."
                    },
                ),
                "pair": (PAIR_TYPE, {"tooltip": STACK_TOOLTIP}),
            },
        }

    RETURN_TYPES = ("MODEL", PAIR_TYPE, "CLIP")
    RETURN_NAMES = ("model", "pair", "clip")
    OUTPUT_TOOLTIPS = (
        "Connect to the W2SD sampler's model: the LoRA at main scale (and at the side scales during reflections).",
        "The strong/weak pair.",
        "The CLIP with the LoRA at main scale (empty if no CLIP was given).",
    )
    FUNCTION = "split"
    CATEGORY = "sampling/W2SD"
    DESCRIPTION = "LoRA at +strong / -weak scales as the W2SD pair (paper Table 7, weight difference), sharing one copy of the base weights: switching sides re-patches nothing."

    @classmethod
    def VALIDATE_INPUTS(cls, input_types: dict | None = None, **values: Any) -> bool | str:
        return check_declared(cls.INPUT_TYPES(), input_types, **values) or True

    def split(self, model, lora_name, main_scale, strong_scale, weak_scale, clip=None, pair=None):  # type: ignore[no-untyped-def]
        path = folder_paths.get_full_path("loras", lora_name)
        if path is None:
            raise ValueError(f"lora_name={lora_name!r} is not in the loras folder.")
        lora = read_lora_file(path, lora_name)
        scales = {"main": main_scale, "strong": strong_scale, "weak": weak_scale}
        try:
            split_model, _report = make_lora_scale_model(model, lora, scales, name=lora_name)
        except ValueError as e:  # the file is read but is no LoRA this splitter can apply to this model
            raise ValueError(f"lora_name: {e}") from None
        split_clip = lora_clip(clip, lora, main_scale) if clip is not None else None
        side = Side(model=split_model)
        return (
            split_model,
            incoming_pair(pair).stacked(side, side, f"LoRA {strong_scale:+g}/{weak_scale:+g}"),
            split_clip,
        )


def read_lora_file(path: str, lora_name: str) -> dict:
    """The file's tensors, loaded safely (no pickled code runs); a file that cannot be read is named."""
    try:
        return comfy.utils.load_torch_file(path, safe_load=True)
    except Exception as e:  # safetensors, torch's weights-only unpickler and the OS each raise their own
        raise ValueError(
            f"lora_name={lora_name!r} could not be read as a LoRA file ({type(e).__name__}: {first_line(e, 200)}). It may be "
            "truncated, empty, not a safetensors/PyTorch weights file, or a pickle that safe loading refuses."
        ) from None


class W2SDCFGGap:
    """Z-Sampling as a W2SD pair: the same model at a high (strong) and a low (weak) cfg."""

    SEARCH_ALIASES = ["z-sampling", "zigzag", "cfg gap", "w2sd cfg"]

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "strong_cfg": (
                    "FLOAT",
                    {
                        "default": 5.5,
                        "min": 0.0,
                        "max": 100.0,
                        "step": 0.1,
                        "round": 0.01,
                        "tooltip": "cfg of the strong side (paper / Z-Sampling: 5.5).",
                    },
                ),
                "weak_cfg": (
                    "FLOAT",
                    {
                        "default": 0.0,
                        "min": 0.0,
                        "max": 100.0,
                        "step": 0.1,
                        "round": 0.01,
                        "tooltip": "cfg of the weak side (Z-Sampling: 0 = unconditional only, one pass; official LoRA code: 1.0).",
                    },
                ),
            },
            "optional": {"pair": (PAIR_TYPE, {"tooltip": STACK_TOOLTIP})},
        }

    RETURN_TYPES = (PAIR_TYPE,)
    RETURN_NAMES = ("pair",)
    FUNCTION = "build"
    CATEGORY = "sampling/W2SD"
    DESCRIPTION = "CFG gap (= Z-Sampling): the strong side at a high cfg, the weak side at a low one, on the same model. Stack it on a LoRA split for the paper's cumulative setting."

    @classmethod
    def VALIDATE_INPUTS(cls, input_types: dict | None = None, **values: Any) -> bool | str:
        problem = check_declared(cls.INPUT_TYPES(), input_types, **values)
        if problem:
            return problem
        strong_cfg, weak_cfg = values.get("strong_cfg"), values.get("weak_cfg")
        if strong_cfg is not None and strong_cfg == weak_cfg:
            return f"strong_cfg={strong_cfg} equals weak_cfg={weak_cfg}: a CFG gap needs different values (paper: 5.5 and 0)."
        return True

    def build(self, strong_cfg, weak_cfg, pair=None):  # type: ignore[no-untyped-def]
        return (
            incoming_pair(pair).stacked(
                Side(cfg=strong_cfg), Side(cfg=weak_cfg), f"CFG {strong_cfg:g}/{weak_cfg:g}"
            ),
        )


def node_mappings() -> tuple[dict[str, Any], dict[str, str]]:
    return (
        {"W2SDModelPair": W2SDModelPair, "W2SDLoraSplit": W2SDLoraSplit, "W2SDCFGGap": W2SDCFGGap},
        {
            "W2SDModelPair": "Weak/Strong Model Pair (W2SD)",
            "W2SDLoraSplit": "LoRA-scale splitter (W2SD)",
            "W2SDCFGGap": "CFG-gap config (W2SD, Z-Sampling)",
        },
    )
